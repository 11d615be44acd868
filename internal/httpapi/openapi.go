package httpapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"

	"go.yaml.in/yaml/v3"
)

// openAPIYAML is the OpenAPI 3.1 description of every route: the one source,
// served as is at /openapi.yaml and as JSON at /openapi.json when API keys
// are configured. The tests hold it to the router and to the real answers.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// openAPIDoc is the description in the two forms it is served in.
type openAPIDoc struct{ yaml, json []byte }

// openAPIWithKeys is openapi.yaml as written, for a service with API keys;
// openAPIWithoutKeys drops the security requirements and the apiKey scheme,
// for a service without keys, where nothing needs one: Swagger UI then shows
// no lock on any operation. The JSON keeps the members in the order the YAML
// has them (Swagger UI lists operations and content types in that order).
// The embedded file is checked by the tests, so failing to convert it is a
// build defect.
var openAPIWithKeys, openAPIWithoutKeys = func() (openAPIDoc, openAPIDoc) {
	var doc yaml.Node
	if err := yaml.Unmarshal(openAPIYAML, &doc); err != nil {
		panic(fmt.Sprintf("httpapi: openapi.yaml: %v", err))
	}
	with := openAPIDoc{yaml: openAPIYAML, json: mustJSON(&doc)}
	dropSecurity(&doc)
	var y bytes.Buffer
	enc := yaml.NewEncoder(&y)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		panic(fmt.Sprintf("httpapi: openapi.yaml: %v", err))
	}
	return with, openAPIDoc{yaml: y.Bytes(), json: mustJSON(&doc)}
}()

func mustJSON(doc *yaml.Node) []byte {
	var buf bytes.Buffer
	if err := writeJSONNode(&buf, doc); err != nil {
		panic(fmt.Sprintf("httpapi: openapi.yaml: %v", err))
	}
	return buf.Bytes()
}

// dropSecurity removes the document's and every operation's security
// requirements and components.securitySchemes from an OpenAPI document.
func dropSecurity(doc *yaml.Node) {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	deleteKey(root, "security")
	if paths := mappingValue(root, "paths"); paths != nil {
		for i := 1; i < len(paths.Content); i += 2 {
			item := paths.Content[i]
			for j := 1; j < len(item.Content); j += 2 {
				deleteKey(item.Content[j], "security") // each operation's
			}
		}
	}
	if components := mappingValue(root, "components"); components != nil {
		deleteKey(components, "securitySchemes")
	}
}

// mappingValue is the value of key in mapping m, nil when m is no mapping
// or has no such key.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func deleteKey(m *yaml.Node, key string) {
	if m.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// openAPIFor is the description as served: without the security
// requirements when no API keys are configured.
func openAPIFor(keys *APIKeys) openAPIDoc {
	if keys.enabled() {
		return openAPIWithKeys
	}
	return openAPIWithoutKeys
}

func handleOpenAPIYAML(keys *APIKeys) http.HandlerFunc {
	doc := openAPIFor(keys)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(doc.yaml)
	}
}

func handleOpenAPIJSON(keys *APIKeys) http.HandlerFunc {
	doc := openAPIFor(keys)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc.json)
	}
}

func writeJSONNode(buf *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return fmt.Errorf("line %d: expected one document", n.Line)
		}
		return writeJSONNode(buf, n.Content[0])
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				buf.WriteByte(',')
			}
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a mapping key must be a scalar", k.Line)
			}
			if err := writeJSONValue(buf, k.Value); err != nil {
				return fmt.Errorf("line %d: %w", k.Line, err)
			}
			buf.WriteByte(':')
			if err := writeJSONNode(buf, n.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSONNode(buf, c); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case yaml.ScalarNode:
		if n.Tag == "!!timestamp" {
			// YAML would turn an unquoted 2018-03-28 into a time; JSON has none.
			return fmt.Errorf("line %d: quote the date %s", n.Line, n.Value)
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		if n.Tag == "!!float" {
			// Keep the literal: 955.00 stays 955.00, as the service writes money.
			if json.Valid([]byte(n.Value)) {
				buf.WriteString(n.Value)
				return nil
			}
		}
		if err := writeJSONValue(buf, v); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
	case yaml.AliasNode:
		return writeJSONNode(buf, n.Alias)
	default:
		return fmt.Errorf("line %d: unexpected YAML node", n.Line)
	}
	return nil
}

// writeJSONValue writes v as JSON without escaping <, > and & (the
// description's text has "<key>"; JSON needs no escape for them).
func writeJSONValue(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode ends with a newline
	return nil
}
