package integration

import (
	"bytes"
	"encoding/binary"
	"sync"
)

// statementTracker follows the client's side of a connection through the
// proxy and reports the SQL text of every statement the client asks the
// server to execute. PostgreSQL and MySQL send a prepared statement's text
// once (Parse, COM_STMT_PREPARE) and execute it later by name or id, so
// matching the text of a single packet would fire on the prepare, which a
// driver may safely retry, instead of on the execution.
type statementTracker struct {
	proto string // "", "postgres" or "mysql"; decided on the first client byte
	buf   []byte // an incomplete message carried over to the next chunk
	off   bool   // the stream could not be parsed; stop tracking

	// PostgreSQL
	pgStartup bool              // past the untyped startup messages
	stmts     map[string]string // prepared statement name -> text
	portals   map[string]string // portal name -> text

	// MySQL. The server numbers prepared statements in its answer to
	// COM_STMT_PREPARE, so the server's side of the stream is followed too.
	myHandshake bool   // past the client's handshake response
	myPrepared  string // text of the last COM_STMT_PREPARE
	srvBuf      []byte // an incomplete server packet
	srvOff      bool
	mu          sync.Mutex        // guards the fields below, shared by both directions
	myAwait     string            // text of a prepare whose answer is awaited
	myAwaiting  bool              // a prepare's answer is awaited
	myStmts     map[uint32]string // statement id -> text
}

// The PostgreSQL startup codes of untyped messages.
const (
	pgProtocol3 = 196608
	pgSSL       = 80877103
	pgGSSEnc    = 80877104
	pgCancel    = 80877102
)

// feed takes the next chunk the client sent and returns the texts of the
// statements it executes. serverFirst says whether the server spoke before
// the client did, as MySQL does and PostgreSQL does not.
func (st *statementTracker) feed(chunk []byte, serverFirst bool) []string {
	if st.off {
		return nil
	}
	if st.proto == "" {
		st.proto = "postgres"
		if serverFirst {
			st.proto = "mysql"
		}
		st.stmts, st.portals = map[string]string{}, map[string]string{}
	}
	st.buf = append(st.buf, chunk...)
	var out []string
	for {
		var msg []byte
		var ok bool
		if st.proto == "postgres" {
			msg, ok = st.nextPG()
		} else {
			msg, ok = st.nextMySQL()
		}
		if !ok {
			break
		}
		if st.proto == "postgres" {
			out = append(out, st.pgMessage(msg)...)
		} else {
			out = append(out, st.myPacket(msg)...)
		}
	}
	if st.off {
		st.buf = nil
	}
	return out
}

// nextPG cuts one whole message off the buffer: the type byte (none during
// startup), then a length that counts itself.
func (st *statementTracker) nextPG() ([]byte, bool) {
	hdr := 5
	if !st.pgStartup {
		hdr = 4
	}
	if len(st.buf) < hdr {
		return nil, false
	}
	n := int(binary.BigEndian.Uint32(st.buf[hdr-4 : hdr]))
	if n < 4 || n > 1<<30 {
		st.off = true
		return nil, false
	}
	total := hdr - 4 + n
	if len(st.buf) < total {
		return nil, false
	}
	msg := st.buf[:total:total]
	st.buf = st.buf[total:]
	if !st.pgStartup {
		if len(msg) >= 8 {
			switch binary.BigEndian.Uint32(msg[4:8]) {
			case pgSSL, pgGSSEnc:
				return nil, true // the server answers 'N' (or encrypts, which we cannot follow)
			case pgCancel:
				st.off = true
				return nil, false
			}
		}
		st.pgStartup = true
		return nil, true
	}
	return msg, true
}

func (st *statementTracker) pgMessage(msg []byte) []string {
	if msg == nil {
		return nil
	}
	body := msg[5:]
	cstr := func() string {
		i := bytes.IndexByte(body, 0)
		if i < 0 {
			s := string(body)
			body = nil
			return s
		}
		s := string(body[:i])
		body = body[i+1:]
		return s
	}
	switch msg[0] {
	case 'Q': // simple query: executes at once
		return []string{cstr()}
	case 'P': // Parse: name, text
		name := cstr()
		st.stmts[name] = cstr()
	case 'B': // Bind: portal, statement
		portal := cstr()
		st.portals[portal] = st.stmts[cstr()]
	case 'E': // Execute: portal
		return []string{st.portals[cstr()]}
	}
	return nil
}

// nextMySQL cuts one packet off the buffer: a 3-byte length, a sequence
// number, the payload.
func (st *statementTracker) nextMySQL() ([]byte, bool) {
	if len(st.buf) < 4 {
		return nil, false
	}
	n := int(st.buf[0]) | int(st.buf[1])<<8 | int(st.buf[2])<<16
	if len(st.buf) < 4+n {
		return nil, false
	}
	pkt := st.buf[: 4+n : 4+n]
	st.buf = st.buf[4+n:]
	return pkt, true
}

// MySQL commands.
const (
	myQuery       = 0x03
	myStmtPrepare = 0x16
	myStmtExecute = 0x17
	myStmtClose   = 0x19
)

func (st *statementTracker) myPacket(pkt []byte) []string {
	if !st.myHandshake {
		st.myHandshake = true // the handshake response; then auth packets with seq > 0
		return nil
	}
	if pkt[3] != 0 || len(pkt) < 5 { // not a command (auth switch data, a long packet's tail)
		return nil
	}
	payload := pkt[4:]
	switch payload[0] {
	case myQuery:
		return []string{string(payload[1:])}
	case myStmtPrepare:
		st.myPrepared = string(payload[1:])
		st.mu.Lock()
		st.myAwait, st.myAwaiting = st.myPrepared, true
		st.mu.Unlock()
	case myStmtExecute:
		if len(payload) >= 5 {
			id := binary.LittleEndian.Uint32(payload[1:5])
			st.mu.Lock()
			text, ok := st.myStmts[id]
			st.mu.Unlock()
			if ok {
				return []string{text}
			}
		}
		// The server's answer was not seen: assume the statement prepared
		// last, which is what go-sql-driver/mysql runs for a query with
		// arguments (prepare, execute, close).
		return []string{st.myPrepared}
	case myStmtClose:
		if len(payload) >= 5 {
			st.mu.Lock()
			delete(st.myStmts, binary.LittleEndian.Uint32(payload[1:5]))
			st.mu.Unlock()
		}
	}
	return nil
}

// feedServer takes the next chunk the server sent on a connection where it
// spoke first (MySQL), and records the ids of prepared statements.
func (st *statementTracker) feedServer(chunk []byte) {
	if st.srvOff {
		return
	}
	st.srvBuf = append(st.srvBuf, chunk...)
	for len(st.srvBuf) >= 4 {
		n := int(st.srvBuf[0]) | int(st.srvBuf[1])<<8 | int(st.srvBuf[2])<<16
		if len(st.srvBuf) < 4+n {
			return
		}
		seq, payload := st.srvBuf[3], st.srvBuf[4:4+n]
		st.mu.Lock()
		if st.myAwaiting && seq == 1 && len(payload) > 0 {
			// The first packet of the answer: COM_STMT_PREPARE_OK
			// (0x00, then the statement id) or an error (0xff).
			if payload[0] == 0x00 && len(payload) >= 5 {
				if st.myStmts == nil {
					st.myStmts = map[uint32]string{}
				}
				st.myStmts[binary.LittleEndian.Uint32(payload[1:5])] = st.myAwait
			}
			st.myAwait, st.myAwaiting = "", false
		}
		st.mu.Unlock()
		st.srvBuf = st.srvBuf[4+n:]
	}
	if cap(st.srvBuf) > 1<<20 && len(st.srvBuf) == 0 {
		st.srvBuf = nil
	}
}
