package tarstream

import (
	"archive/tar"
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzHeader writes one entry's header blocks with appendHeader, followed
// by its content and the end of the archive, and reads them back with
// archive/tar: every field must come back as written, and the pax header
// must hold exactly the records needed.
func FuzzHeader(f *testing.F) {
	f.Add("nix/store/aaa-x/bin/sh", "", byte(tar.TypeReg), int64(0o555), int64(3), 0, 0, "root", "root")
	f.Add("nix/store/aaa-x/lib", "", byte(tar.TypeDir), int64(0o1777), int64(0), 1000, 100, "", "")
	f.Add("nix/store/aaa-x/lib64", "lib", byte(tar.TypeSymlink), int64(0o777), int64(0), 0, 0, "root", "root")
	f.Add(strings.Repeat("n", 99), strings.Repeat("t", 101), byte(tar.TypeSymlink), int64(0o777), int64(0), 0, 0, "root", "root")
	f.Add(strings.Repeat("n", 100), "", byte(tar.TypeDir), int64(0o555), int64(0), 0o7777777, 0o7777777+1, "u", "g")
	f.Add("big", "", byte(tar.TypeReg), int64(0o444), int64(0o77777777777+1), 1<<30, 0, strings.Repeat("u", 33), strings.Repeat("g", 32))
	f.Add("ünïcode/\n名前", "", byte(tar.TypeReg), int64(0o6755), int64(1), 0, 0, "root", "root")
	f.Fuzz(func(t *testing.T, name, link string, typ byte, mode, size int64, uid, gid int, uname, gname string) {
		switch typ % 3 {
		case 0:
			typ, link = tar.TypeReg, ""
		case 1:
			typ, link, size = tar.TypeDir, "", 0
		default:
			typ, size = tar.TypeSymlink, 0
		}
		// What tarstream can be given: names and targets from the file
		// system (non-empty, no NUL, no trailing slash), permission bits,
		// sizes and ids that are not negative, owner names without NUL.
		name = strings.TrimRight(name, "/")
		if name == "" || strings.ContainsRune(name, 0) || strings.ContainsRune(link, 0) ||
			strings.ContainsRune(uname, 0) || strings.ContainsRune(gname, 0) ||
			size < 0 || size > 1<<40 || uid < 0 || gid < 0 || (typ == tar.TypeSymlink && link == "") {
			t.Skip()
		}
		mode &= 0o7777
		e := &entry{name: name, typ: typ, mode: mode, size: size, uid: uid, gid: gid, uname: uname, gname: gname, link: link, mtime: defaultMtime}
		hdr := appendHeader(nil, e)
		if len(hdr)%blockSize != 0 {
			t.Fatalf("appendHeader() wrote %d bytes, not whole blocks", len(hdr))
		}
		// Content is only read back when it is small.
		content := int64(0)
		if size <= 1<<16 {
			content = size
		}
		stream := append(hdr, make([]byte, content+int64(padding(content))+2*blockSize)...)
		tr := tar.NewReader(bytes.NewReader(stream))
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("archive/tar cannot read the header of %+v: %v", e, err)
		}
		want := map[string]string{}
		if len(e.tarName()) > maxName {
			want["path"] = e.tarName()
		}
		if len(link) > maxName {
			want["linkpath"] = link
		}
		if len(uname) > maxOwner {
			want["uname"] = uname
		}
		if len(gname) > maxOwner {
			want["gname"] = gname
		}
		if size > maxSize {
			want["size"] = strconv.FormatInt(size, 10)
		}
		if uid > maxID {
			want["uid"] = strconv.Itoa(uid)
		}
		if gid > maxID {
			want["gid"] = strconv.Itoa(gid)
		}
		for k, v := range want {
			if h.PAXRecords[k] != v {
				t.Errorf("pax record %s = %q, want %q", k, h.PAXRecords[k], v)
			}
		}
		if len(h.PAXRecords) != len(want) {
			t.Errorf("pax records = %q, want only %q", h.PAXRecords, want)
		}
		for _, c := range []struct {
			field     string
			got, want any
		}{
			{"Name", h.Name, e.tarName()},
			{"Linkname", h.Linkname, link},
			{"Typeflag", h.Typeflag, typ},
			{"Mode", h.Mode, mode},
			{"Size", h.Size, size},
			{"Uid", h.Uid, uid},
			{"Gid", h.Gid, gid},
			{"Uname", h.Uname, uname},
			{"Gname", h.Gname, gname},
		} {
			if c.got != c.want {
				t.Errorf("%s = %#v, want %#v (entry %+v)", c.field, c.got, c.want, e)
			}
		}
		if !h.ModTime.Equal(time.Unix(defaultMtime, 0)) {
			t.Errorf("ModTime = %v, want %v", h.ModTime, time.Unix(defaultMtime, 0))
		}
		if size != content {
			return
		}
		if n, err := io.Copy(io.Discard, tr); err != nil || n != size {
			t.Fatalf("content = %d bytes, %v; want %d", n, err, size)
		}
		if _, err := tr.Next(); err != io.EOF {
			t.Fatalf("after the entry: %v, want the end of the archive", err)
		}
	})
}
