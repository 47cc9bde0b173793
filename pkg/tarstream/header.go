package tarstream

import (
	"archive/tar"
	"strconv"
)

// Header layout: POSIX ustar (magic "ustar\x0000"), with a pax extended
// header ('x') in front only when a value does not fit its ustar field.
// Every field is written by this file, not by archive/tar, so that the
// bytes cannot change with the Go version.

const (
	blockSize = 512

	maxName  = 100
	maxOwner = 32
	maxID    = 0o7777777     // 7 octal digits
	maxSize  = 0o77777777777 // 11 octal digits
)

// appendHeader appends e's header blocks (a pax header when needed, then
// the ustar header) to dst.
func appendHeader(dst []byte, e *entry) []byte {
	name, link := e.tarName(), e.link
	var recs []byte
	// Records in key order, so the bytes are fixed.
	if e.gid > maxID {
		recs = appendRecord(recs, "gid", strconv.Itoa(e.gid))
	}
	if len(e.gname) > maxOwner {
		recs = appendRecord(recs, "gname", e.gname)
	}
	if len(link) > maxName {
		recs = appendRecord(recs, "linkpath", link)
	}
	if len(name) > maxName {
		recs = appendRecord(recs, "path", name)
	}
	if e.size > maxSize {
		recs = appendRecord(recs, "size", strconv.FormatInt(e.size, 10))
	}
	if e.uid > maxID {
		recs = appendRecord(recs, "uid", strconv.Itoa(e.uid))
	}
	if len(e.uname) > maxOwner {
		recs = appendRecord(recs, "uname", e.uname)
	}
	if len(recs) > 0 {
		dst = appendBlock(dst, &block{name: "PaxHeader", typ: tar.TypeXHeader, mode: 0o644, size: int64(len(recs)), mtime: e.mtime})
		dst = append(dst, recs...)
		dst = appendZeros(dst, padding(int64(len(recs))))
	}
	b := block{name: name, link: link, typ: e.typ, mode: e.mode, size: e.size, mtime: e.mtime, uid: e.uid, gid: e.gid, uname: e.uname, gname: e.gname}
	return appendBlock(dst, &b)
}

// appendRecord appends one pax record "LEN key=value\n", where LEN counts
// the whole record including its own digits.
func appendRecord(dst []byte, key, value string) []byte {
	n := len(key) + len(value) + 3 // space, '=', newline
	l := n + len(strconv.Itoa(n))
	if len(strconv.Itoa(l)) > len(strconv.Itoa(n)) {
		l++
	}
	dst = strconv.AppendInt(dst, int64(l), 10)
	dst = append(dst, ' ')
	dst = append(dst, key...)
	dst = append(dst, '=')
	dst = append(dst, value...)
	return append(dst, '\n')
}

type block struct {
	name, link   string
	typ          byte
	mode, size   int64
	mtime        int64
	uid, gid     int
	uname, gname string
}

// appendBlock appends one ustar header block. Values that do not fit are
// truncated (names) or zero (numbers); a pax record carries them.
func appendBlock(dst []byte, b *block) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, blockSize)...)
	h := dst[start : start+blockSize]
	copy(h[0:100], b.name)
	putOctal(h[100:108], b.mode&0o7777)
	putOctal(h[108:116], fit(int64(b.uid), maxID))
	putOctal(h[116:124], fit(int64(b.gid), maxID))
	putOctal(h[124:136], fit(b.size, maxSize))
	putOctal(h[136:148], b.mtime)
	h[156] = b.typ
	copy(h[157:257], b.link)
	copy(h[257:265], "ustar\x0000")
	if len(b.uname) <= maxOwner {
		copy(h[265:297], b.uname)
	}
	if len(b.gname) <= maxOwner {
		copy(h[297:329], b.gname)
	}
	putOctal(h[329:337], 0) // devmajor
	putOctal(h[337:345], 0) // devminor
	// Checksum: the sum of all bytes with the checksum field as spaces,
	// written as six octal digits, NUL, space.
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	putOctal(h[148:155], sum)
	h[155] = ' '
	return dst
}

func fit(v, max int64) int64 {
	if v > max || v < 0 {
		return 0
	}
	return v
}

// putOctal writes v as zero-padded octal digits followed by a NUL, filling f.
func putOctal(f []byte, v int64) {
	digits := len(f) - 1
	for i := digits - 1; i >= 0; i-- {
		f[i] = byte('0' + v&7)
		v >>= 3
	}
	f[digits] = 0
}

// padding is the number of zero bytes after size content bytes.
func padding(size int64) int {
	return int((blockSize - size%blockSize) % blockSize)
}

func appendZeros(dst []byte, n int) []byte {
	return append(dst, make([]byte, n)...)
}
