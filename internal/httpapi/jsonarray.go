package httpapi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// arrayReader reads the items of a JSON array from a stream, one at a time,
// finding where each ends by its brackets and strings alone; each item is
// checked when it is decoded. encoding/json's Decoder would do the same with
// a full parse and a copy per item, a cost batch ingest pays for every claim.
type arrayReader struct {
	r     *bufio.Reader
	item  []byte // the current item; reused
	max   int    // the longest item read
	begun bool   // past the first item
}

var (
	errNotArray     = errors.New("a batch is a JSON array of claims")
	errItemTooLarge = errors.New("item too large")
)

func newArrayReader(r io.Reader, max int) *arrayReader {
	return &arrayReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// open reads up to the array's opening bracket.
func (a *arrayReader) open() error {
	c, err := a.skipSpace()
	if errors.Is(err, io.EOF) || (err == nil && c != '[') {
		return errNotArray
	}
	return err
}

// next returns the next item, valid until the next call; io.EOF after the
// closing bracket. Any other error leaves the rest of the array unread.
func (a *arrayReader) next() ([]byte, error) {
	c, err := a.skipSpace()
	if err != nil {
		return nil, eofIsUnexpected(err)
	}
	if c == ']' {
		return nil, io.EOF
	}
	if a.begun {
		if c != ',' {
			return nil, fmt.Errorf("expected ',' or ']' after an item, found %q", c)
		}
		if c, err = a.skipSpace(); err != nil {
			return nil, eofIsUnexpected(err)
		}
	}
	a.begun = true
	a.item = append(a.item[:0], c)
	switch c {
	case '{', '[':
		err = a.readNested()
	case '"':
		err = a.readString()
	default: // a number or a literal: up to the next delimiter
		for {
			b, err := a.r.ReadByte()
			if err != nil {
				return nil, eofIsUnexpected(err)
			}
			if b == ',' || b == ']' || isSpace(b) {
				_ = a.r.UnreadByte()
				return a.item, nil
			}
			if err := a.add(b); err != nil {
				return nil, err
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return a.item, nil
}

// readNested reads the rest of an object or array whose opening bracket was
// read. Each closing bracket must match its opening one: an item whose
// brackets do not match has no knowable end, and reading on would report the
// items after it at the wrong positions.
func (a *arrayReader) readNested() error {
	closers := []byte{closerOf(a.item[0])}
	for len(closers) > 0 {
		b, err := a.r.ReadByte()
		if err != nil {
			return eofIsUnexpected(err)
		}
		if err := a.add(b); err != nil {
			return err
		}
		switch b {
		case '"':
			if err := a.readString(); err != nil {
				return err
			}
		case '{', '[':
			closers = append(closers, closerOf(b))
		case '}', ']':
			if want := closers[len(closers)-1]; b != want {
				return fmt.Errorf("%q where %q closes the item", b, want)
			}
			closers = closers[:len(closers)-1]
		}
	}
	return nil
}

func closerOf(open byte) byte {
	if open == '{' {
		return '}'
	}
	return ']'
}

// readString reads the rest of a string whose opening quote was read.
func (a *arrayReader) readString() error {
	for escaped := false; ; {
		b, err := a.r.ReadByte()
		if err != nil {
			return eofIsUnexpected(err)
		}
		if err := a.add(b); err != nil {
			return err
		}
		switch {
		case escaped:
			escaped = false
		case b == '\\':
			escaped = true
		case b == '"':
			return nil
		}
	}
}

func (a *arrayReader) add(b byte) error {
	if len(a.item) == a.max {
		return errItemTooLarge
	}
	a.item = append(a.item, b)
	return nil
}

func (a *arrayReader) skipSpace() (byte, error) {
	for {
		b, err := a.r.ReadByte()
		if err != nil || !isSpace(b) {
			return b, err
		}
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
