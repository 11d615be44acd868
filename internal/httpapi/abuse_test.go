package httpapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rawRequest writes head and then the body slowly, a byte every gap, on a
// raw connection, and returns what the server answered. It stops
// trickling 1.3 s in: past the test servers' read timeout (1 s), and before
// net/http closes the connection (it waits 500 ms after an answer that left
// the body unread). A byte that reached the closed socket would reset the
// connection, and the reset can destroy the answer before the test reads
// it, as it did under -race on a loaded machine.
func rawRequest(t *testing.T, url, head string, body []byte, gap time.Duration) (status int, answer []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, head)
	require.NoError(t, err)
	go func() {
		stop := time.Now().Add(1300 * time.Millisecond)
		for _, b := range body {
			if time.Now().After(stop) {
				return
			}
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(gap)
		}
	}()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer res.Body.Close()
	answer, err = io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, answer
}

// A body trickled past the server's read deadline is the client's fault: a
// 408 (or, in a batch, a 408 where reading stopped), never a 500 or an
// ERROR in the log (which would feed the 5xx alert).
func TestTrickledBodyIs408(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	s := mustStackWith(t, stackOptions{readTimeout: time.Second, batchTimeout: time.Second,
		log: slog.New(slog.NewJSONHandler(logs, nil))})
	body := []byte(oldServicePayload)
	status, answer := rawRequest(t, s.url, fmt.Sprintf("POST /claims HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body)),
		body, 100*time.Millisecond)
	require.Equal(t, http.StatusRequestTimeout, status, string(answer))
	require.Contains(t, string(answer), "too slowly")

	// On a connection kept alive after a first request, the answer's write
	// deadline is as close as the read deadline: the 408 must still arrive.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	br := bufio.NewReader(conn)
	fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	res, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	fmt.Fprintf(conn, "POST /claims HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(body), body[:10]) // and the rest never comes
	res, err = http.ReadResponse(br, nil)
	require.NoError(t, err, "an answer arrives")
	_ = res.Body.Close()
	require.Equal(t, http.StatusRequestTimeout, res.StatusCode)
	require.True(t, res.Close, "the connection closes after the answer")

	// The first claim arrives at once, the second a byte every 10 ms.
	first := "[" + oldServicePayload + ",\n"
	head := fmt.Sprintf("POST /claims/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(first)+len(body)+1, first)
	status, answer = rawRequest(t, s.url, head, body, 10*time.Millisecond)
	require.Equal(t, http.StatusOK, status, string(answer))
	var got struct {
		Received int  `json:"received"`
		Created  int  `json:"created"`
		Complete bool `json:"complete"`
		Results  []struct {
			Status int `json:"status"`
		} `json:"results"`
	}
	require.NoError(t, json.Unmarshal(answer, &got), string(answer))
	require.False(t, got.Complete)
	require.Equal(t, 1, got.Created, "the claim read before the deadline is stored")
	require.Equal(t, http.StatusRequestTimeout, got.Results[len(got.Results)-1].Status, string(answer))

	require.NotContains(t, logs.String(), `"level":"ERROR"`)
}

// A batch over the body limit still gets a whole JSON answer, which ends at
// the claim where reading stopped with a 413 (never a claim cut in two
// reported as malformed), every claim before it answered. The client here
// sends its whole body before it reads (as many do), with a reader slower
// than the server's writes: the server must read on past the limit, or
// closing the connection on unread bytes resets it and destroys the answer.
func TestOverLimitBatchAnswersWhereReadingStopped(t *testing.T) {
	t.Parallel()
	// A limit of 16 MiB instead of 64, to spare the race detector 100 MiB;
	// still over what loopback's socket buffers hold, so that a reset shows.
	const limit = 16 << 20
	s := mustStackWith(t, stackOptions{maxBatchBytes: limit})
	for _, mediaType := range []string{"application/x-ndjson", "application/json"} {
		t.Run(mediaType, func(t *testing.T) {
			t.Parallel()
			// Two claims to store, then claims of 256 KiB (refused at once: no
			// lines) until the body passes the limit by 12 MiB (claimd reads
			// up to the limit again before it answers).
			var body bytes.Buffer
			sep := "\n"
			if mediaType == "application/json" {
				body.WriteString("[")
				sep = ","
			}
			item := `{"lines": []` + strings.Repeat(" ", 256<<10-14) + `}`
			cut := -1
			for i := 0; body.Len() < limit+12<<20; i++ {
				if i > 0 {
					body.WriteString(sep)
				}
				if i < 2 {
					fmt.Fprintf(&body, `{"claim_id": "%s-%d", "lines": [%s]}`, mediaType, i, strings.ReplaceAll(oldServicePayload, "\n", " "))
				} else {
					body.WriteString(item)
				}
				if cut < 0 && body.Len() > limit {
					cut = i
				}
			}
			if mediaType == "application/json" {
				body.WriteString("]")
			}

			conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
			require.NoError(t, err)
			defer conn.Close()
			w := bufio.NewWriter(conn)
			fmt.Fprintf(w, "POST /claims/batch HTTP/1.1\r\nHost: claimd\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n", mediaType)
			for b := body.Bytes(); len(b) > 0; {
				n := min(len(b), 32<<10)
				fmt.Fprintf(w, "%x\r\n%s\r\n", n, b[:n])
				b = b[n:]
			}
			_, _ = w.WriteString("0\r\n\r\n")
			require.NoError(t, w.Flush(), "the whole body is sent: the connection is not reset")

			res, err := http.ReadResponse(bufio.NewReader(&slowReader{conn}), nil)
			require.NoError(t, err)
			defer res.Body.Close()
			answer, err := io.ReadAll(res.Body)
			require.NoError(t, err, "the answer is read whole")
			require.Equal(t, http.StatusOK, res.StatusCode)
			var got struct {
				Received, Created int
				Complete          bool
				Results           []struct{ Index, Status int }
			}
			require.NoError(t, json.Unmarshal(answer, &got))
			require.False(t, got.Complete)
			require.Equal(t, cut+1, got.Received, "reading stopped at the claim the limit cut")
			require.Equal(t, 2, got.Created, "the claims before the limit are stored")
			for _, r := range got.Results[2:cut] {
				require.Equal(t, http.StatusUnprocessableEntity, r.Status, "position %d", r.Index)
			}
			require.Equal(t, http.StatusRequestEntityTooLarge, got.Results[cut].Status)
		})
	}
}

// slowReader reads at most 4 KiB at a time, a millisecond apart: a client on
// a slow link.
type slowReader struct{ r io.Reader }

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return s.r.Read(p[:min(len(p), 4<<10)])
}
