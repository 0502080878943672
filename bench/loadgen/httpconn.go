package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// A minimal HTTP/1.1 client connection: the request bytes are built once per payload, written
// with one write(2), and the response is parsed just enough to find its status and its end
// (Content-Length, chunked, or close). net/http allocates and locks far more per request; on
// the one core the generator shares with the broker, every microsecond counts.

// Error kinds, reported by name in the result.
const (
	errConnect = iota
	errWrite
	errRead
	errTimeout
	errParse
	errExpired // open loop: no connection came free within -timeout of the due time; not sent
	numErrKinds
)

var errKindNames = [numErrKinds]string{"connect", "write", "read", "timeout", "parse", "expired"}

var (
	errMalformed = errors.New("malformed HTTP response")

	hdrContentLength    = []byte("content-length")
	hdrTransferEncoding = []byte("transfer-encoding")
	hdrConnection       = []byte("connection")
	tokChunked          = []byte("chunked")
	tokClose            = []byte("close")
	tokKeepAlive        = []byte("keep-alive")
)

type httpConn struct {
	addr    string
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
}

func newHTTPConn(addr string, timeout time.Duration) *httpConn {
	return &httpConn{addr: addr, timeout: timeout, br: bufio.NewReaderSize(nil, 16<<10)}
}

func (c *httpConn) connect() error {
	if c.conn != nil {
		return nil
	}
	conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
	if err != nil {
		return err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c.conn = conn
	c.br.Reset(conn)
	return nil
}

func (c *httpConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// roundTrip sends one pre-built request and reads its response. It returns the status code,
// or an error kind (>= 0) when no complete response arrived; the connection is then closed.
// attempted tells whether any part of the request may have reached the server.
func (c *httpConn) roundTrip(req []byte) (status int, errKind int, attempted bool) {
	if err := c.connect(); err != nil {
		return 0, errConnect, false
	}
	if c.timeout > 0 {
		_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	}
	if _, err := c.conn.Write(req); err != nil {
		kind := errWrite
		if isTimeout(err) {
			kind = errTimeout
		}
		c.close()
		return 0, kind, true
	}
	status, keepAlive, err := readResponse(c.br)
	if err != nil {
		kind := errRead
		if isTimeout(err) {
			kind = errTimeout
		} else if errors.Is(err, errMalformed) || errors.Is(err, bufio.ErrBufferFull) {
			kind = errParse
		}
		c.close()
		return 0, kind, true
	}
	if !keepAlive {
		c.close()
	}
	return status, -1, true
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readResponse reads one response and discards its body, allocation-free on the common path.
func readResponse(br *bufio.Reader) (status int, keepAlive bool, err error) {
	for {
		status, keepAlive, err = readOne(br)
		// 1xx answers (100 Continue) precede the real one.
		if err != nil || status >= 200 {
			return
		}
	}
}

func readOne(br *bufio.Reader) (int, bool, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF && len(line) == 0 {
			return 0, false, io.ErrUnexpectedEOF
		}
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 13 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, errMalformed
	}
	status := 0
	for _, ch := range line[9:12] {
		if ch < '0' || ch > '9' {
			return 0, false, errMalformed
		}
		status = status*10 + int(ch-'0')
	}
	keepAlive := line[7] == '1'
	contentLength := int64(-1)
	chunked := false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(line) <= 2 { // "\r\n": end of headers
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, false, errMalformed
		}
		name := line[:colon]
		value := bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, hdrContentLength):
			n, ok := parseDecimal(value)
			if !ok {
				return 0, false, errMalformed
			}
			contentLength = n
		case bytes.EqualFold(name, hdrTransferEncoding):
			chunked = containsFold(value, tokChunked)
		case bytes.EqualFold(name, hdrConnection):
			if containsFold(value, tokClose) {
				keepAlive = false
			} else if containsFold(value, tokKeepAlive) {
				keepAlive = true
			}
		}
	}
	switch {
	case status < 200 || status == 204 || status == 304:
		// no body
	case chunked:
		if err := discardChunked(br); err != nil {
			return 0, false, err
		}
	case contentLength >= 0:
		if _, err := br.Discard(int(contentLength)); err != nil {
			return 0, false, err
		}
	default:
		// Body delimited by the end of the connection.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return 0, false, err
		}
		keepAlive = false
	}
	return status, keepAlive, nil
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size := int64(0)
		digits := 0
		for _, ch := range line {
			var d byte
			switch {
			case ch >= '0' && ch <= '9':
				d = ch - '0'
			case ch >= 'a' && ch <= 'f':
				d = ch - 'a' + 10
			case ch >= 'A' && ch <= 'F':
				d = ch - 'A' + 10
			default:
				goto done
			}
			size = size*16 + int64(d)
			digits++
			if digits > 15 {
				return errMalformed
			}
		}
	done:
		if digits == 0 {
			return errMalformed
		}
		if size == 0 {
			// Trailers, then an empty line.
			for {
				line, err = br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(line) <= 2 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}

func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int64(ch-'0')
	}
	return n, true
}

func containsFold(haystack, needle []byte) bool {
	for i := 0; i+len(needle) <= len(haystack); i++ {
		if bytes.EqualFold(haystack[i:i+len(needle)], needle) {
			return true
		}
	}
	return false
}
