package main

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name      string
		raw       string
		status    int
		keepAlive bool
		rest      string // what must be left unread: the next response
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: a\r\n\r\nokNEXT", 200, true, "NEXT"},
		{"empty body", "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nNEXT", 200, true, "NEXT"},
		{"503 close", "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbadNEXT", 503, false, "NEXT"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\na;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT", 200, true, "NEXT"},
		{"continue first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\nNEXT", 401, true, "NEXT"},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\nNEXT", 200, false, "NEXT"},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nbody to the end", 200, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.raw))
			status, keepAlive, err := readResponse(br)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if status != tc.status || keepAlive != tc.keepAlive {
				t.Fatalf("got status %d keep-alive %v, want %d %v", status, keepAlive, tc.status, tc.keepAlive)
			}
			rest := make([]byte, 64)
			n, _ := br.Read(rest)
			if string(rest[:n]) != tc.rest {
				t.Fatalf("left %q unread, want %q", rest[:n], tc.rest)
			}
		})
	}
}

func TestReadResponseMalformed(t *testing.T) {
	for _, raw := range []string{
		"SMTP ready\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
	} {
		if _, _, err := readResponse(bufio.NewReader(strings.NewReader(raw))); err == nil {
			t.Errorf("%q: no error", raw)
		}
	}
	// A connection closed before the answer is an error, not a status.
	if _, _, err := readResponse(bufio.NewReader(strings.NewReader(""))); err == nil {
		t.Error("empty: no error")
	}
}
