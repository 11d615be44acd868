package main

// The Dockerfile parser TestComposeFile reads the image with, and the
// .dockerignore check.

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type dockerfile struct {
	text         string
	base         string // the final stage's FROM image
	user         string // the final stage's last USER
	expose       []int  // the final stage's EXPOSE ports, sorted
	entrypoint   []string
	cmd          []string
	buildOutput  string // -o of the go build of ./cmd/claimd
	copiesBinary bool   // the final stage copies it to /claimd
}

// loadDockerfile reads the instructions that matter here. Line continuations
// and comments are handled; ENTRYPOINT and CMD must be in JSON (exec) form.
func loadDockerfile(t *testing.T, file string) *dockerfile {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	df := &dockerfile{text: string(b)}
	var instructions []string
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		instructions = append(instructions, cur.String())
		cur.Reset()
	}
	var (
		stage      string // current stage's name
		buildStage string
		finalFrom  int
	)
	for i, ins := range instructions {
		if kw, _, _ := strings.Cut(ins, " "); strings.EqualFold(kw, "FROM") {
			finalFrom = i
		}
	}
	goBuild := regexp.MustCompile(`\bgo build\b.*\s-o\s+(\S+).*\s\./cmd/claimd\s*$`)
	for i, ins := range instructions {
		kw, rest, _ := strings.Cut(ins, " ")
		kw, rest = strings.ToUpper(kw), strings.TrimSpace(rest)
		final := i >= finalFrom
		switch kw {
		case "FROM":
			f := strings.Fields(rest)
			stage = ""
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stage = f[2]
			}
			if final {
				df.base = f[0]
			}
		case "RUN":
			if m := goBuild.FindStringSubmatch(rest); m != nil {
				df.buildOutput, buildStage = m[1], stage
			}
		case "COPY":
			f := strings.Fields(rest)
			if final && buildStage != "" && len(f) == 3 && f[0] == "--from="+buildStage &&
				path.Clean(f[1]) == path.Clean(df.buildOutput) && f[2] == "/claimd" {
				df.copiesBinary = true
			}
		case "USER":
			if final {
				df.user = rest
			}
		case "EXPOSE":
			if final {
				for _, p := range strings.Fields(rest) {
					n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
					if err != nil {
						t.Errorf("Dockerfile: EXPOSE %q", p)
						continue
					}
					df.expose = append(df.expose, n)
				}
			}
		case "ENTRYPOINT", "CMD":
			if !final {
				continue
			}
			var args []string
			if err := yaml.Unmarshal([]byte(rest), &args); err != nil || !strings.HasPrefix(rest, "[") {
				t.Errorf("Dockerfile: %s %s: want the JSON (exec) form: a distroless image has no shell", kw, rest)
			}
			if kw == "ENTRYPOINT" {
				df.entrypoint = args
			} else {
				df.cmd = args
			}
		}
	}
	sort.Ints(df.expose)
	return df
}

// checkDockerignore: the build context keeps what `go build ./cmd/claimd`
// needs, the embedded migrations included. Patterns are matched as Docker
// does for plain patterns (a match on a directory drops what is under it;
// the last matching line wins, ! re-includes); ** is not modeled.
func checkDockerignore(t *testing.T, root string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Errorf(".dockerignore: %v (without it the whole repository, .git and binaries included, is sent to the builder)", err)
		return
	}
	var patterns []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			if strings.Contains(line, "**") {
				t.Errorf(".dockerignore: %q: ** is not modeled by this test", line)
			}
			patterns = append(patterns, line)
		}
	}
	excluded := func(p string) (bool, string) {
		out, by := false, ""
		for _, pat := range patterns {
			neg := strings.HasPrefix(pat, "!")
			clean := path.Clean(strings.TrimPrefix(strings.TrimPrefix(pat, "!"), "/"))
			for q := p; q != "."; q = path.Dir(q) {
				if ok, _ := path.Match(clean, q); ok {
					out, by = !neg, pat
					break
				}
			}
		}
		return out, by
	}
	need := []string{"go.mod", "go.sum", "cmd/claimd/main.go", "cmd/claimd/config.go", "migrations/embed.go"}
	for _, dir := range []string{"cmd/claimd", "internal", "migrations"} {
		_ = filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
				rel, _ := filepath.Rel(root, p)
				need = append(need, filepath.ToSlash(rel))
			}
			return nil
		})
	}
	for _, p := range need {
		if out, by := excluded(p); out {
			t.Errorf(".dockerignore %q leaves %s out of the build context; the image build needs it", by, p)
		}
	}
	for _, p := range []string{".git/HEAD", "bin/claimd"} {
		if out, _ := excluded(p); !out {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
}
