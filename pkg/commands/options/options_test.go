package options

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLayersValidate(t *testing.T) {
	dir := t.TempDir()
	sp := filepath.Join(dir, "aaaa-path")
	if err := os.Mkdir(sp, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layers.json")
	good := func() LayersOptions {
		return LayersOptions{Output: out, Paths: []string{sp}, MaxLayers: 1, Compression: "gzip"}
	}
	tests := []struct {
		name    string
		mutate  func(o *LayersOptions)
		wantErr string // substring; "" means valid
	}{
		{"valid", func(*LayersOptions) {}, ""},
		{"no output", func(o *LayersOptions) { o.Output = "" }, "missing -o"},
		{"output dir missing", func(o *LayersOptions) { o.Output = filepath.Join(dir, "nope", "l.json") }, filepath.Join(dir, "nope")},
		{"no paths", func(o *LayersOptions) { o.Paths = nil }, "no store paths"},
		{"paths and graph", func(o *LayersOptions) { o.ClosureGraph = write(t, dir, "graph", "{}") }, ""},
		{"graph only", func(o *LayersOptions) { o.Paths = nil; o.ClosureGraph = write(t, dir, "graph", "{}") }, ""},
		{"missing store path", func(o *LayersOptions) { o.Paths = []string{sp + "-gone"} }, sp + "-gone does not exist"},
		{"relative store path", func(o *LayersOptions) { o.Paths = []string{"foo"} }, "not an absolute path"},
		{"max layers", func(o *LayersOptions) { o.MaxLayers = 0 }, "--max-layers 0"},
		{"compression", func(o *LayersOptions) { o.Compression = "xz" }, `--compression "xz"`},
		{"copy to root missing", func(o *LayersOptions) { _ = o.CopyToRoot.Set(sp + "-root") }, "--copy-to-root " + sp + "-root"},
		{"perms missing", func(o *LayersOptions) { o.Perms = filepath.Join(dir, "perms.json") }, "--perms " + filepath.Join(dir, "perms.json")},
		{"history is dir", func(o *LayersOptions) { o.History = dir }, "is a directory"},
		{"exclude missing", func(o *LayersOptions) { _ = o.ExcludeLayers.Set("/nonexistent.json") }, "--exclude-layers /nonexistent.json"},
		{"tar dir missing", func(o *LayersOptions) { o.TarDirectory = filepath.Join(dir, "tars") }, "--tar-directory"},
		{"mtime", func(o *LayersOptions) { o.Mtime = "yesterday" }, `--mtime: created time "yesterday"`},
		{"mtime now", func(o *LayersOptions) { o.Mtime = "now"; o.KeepDirlinks = true; o.NoStorePaths = true }, ""},
		{"cache missing is made", func(o *LayersOptions) { o.Cache = filepath.Join(dir, "cache") }, ""},
		{"cache is a file", func(o *LayersOptions) { o.Cache = write(t, dir, "cachefile", "") }, "--cache " + filepath.Join(dir, "cachefile") + " (or $NIXOCI_CACHE) is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.mutate(&o)
			checkErr(t, "Validate()", o.Validate(), tt.wantErr)
		})
	}
}

func checkErr(t *testing.T, call string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s = %v, want nil", call, err)
	case want != "" && err == nil:
		t.Errorf("%s = nil, want error containing %q", call, want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("%s = %v, want error containing %q", call, err, want)
	}
}

func TestLoadPerms(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, wantErr string
		wantN                  int
	}{
		{"valid", `[{"path": "/nix/store/a", "regex": ".*", "mode": "0700", "uid": 1000, "gid": 100, "uname": "u", "gname": "g"}]`, "", 1},
		{"empty list", `[]`, "", 0},
		{"malformed", `[{"path": `, "parsing perms", 0},
		{"missing path", `[{"regex": ".*"}]`, `entry 0 has no "path"`, 0},
		{"bad regex", `[{"path": "/a", "regex": "a("}]`, `"a("`, 0},
		{"bad mode", `[{"path": "/a", "regex": ".*", "mode": "0799"}]`, `"0799"`, 0},
		{"mode too big", `[{"path": "/a", "regex": ".*", "mode": "17777"}]`, `"17777"`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := LayersOptions{Perms: write(t, dir, strings.ReplaceAll(tt.name, " ", "_")+".json", tt.content)}
			got, err := o.LoadPerms()
			checkErr(t, "LoadPerms()", err, tt.wantErr)
			if err == nil && len(got) != tt.wantN {
				t.Errorf("LoadPerms() = %d entries, want %d", len(got), tt.wantN)
			}
			if err != nil && !strings.Contains(err.Error(), o.Perms) {
				t.Errorf("LoadPerms() = %v, want the file name %s in it", err, o.Perms)
			}
		})
	}
	t.Run("fields", func(t *testing.T) {
		o := LayersOptions{Perms: write(t, dir, "fields.json", `[{"path": "/nix/store/a", "regex": "x", "mode": "0700", "uid": 1000, "uname": "u"}]`)}
		got, err := o.LoadPerms()
		if err != nil {
			t.Fatal(err)
		}
		e := got[0]
		if e.Path != "/nix/store/a" || e.Regex != "x" || e.Mode != "0700" || e.UID == nil || *e.UID != 1000 || e.GID != nil || e.Uname == nil || *e.Uname != "u" || e.Gname != nil {
			t.Errorf("LoadPerms() = %+v, want path, regex, mode, uid and uname set and gid, gname nil", e)
		}
	})
}

func TestLoadHistory(t *testing.T) {
	dir := t.TempDir()
	o := LayersOptions{History: write(t, dir, "h.json", `{"created_by": "nix", "author": "me", "comment": "c"}`)}
	h, err := o.LoadHistory()
	if err != nil {
		t.Fatal(err)
	}
	if h.CreatedBy != "nix" || h.Author != "me" || h.Comment != "c" {
		t.Errorf("LoadHistory() = %+v, want created_by nix, author me, comment c", h)
	}
	o.History = write(t, dir, "bad.json", `{"created": "x"}`)
	if _, err := o.LoadHistory(); err == nil || !strings.Contains(err.Error(), o.History) {
		t.Errorf("LoadHistory() = %v, want an error naming %s", err, o.History)
	}
}

func TestCheckCreated(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr bool
	}{{"", false}, {"now", false}, {"2024-01-02T03:04:05Z", false}, {"2024-01-02T03:04:05+02:00", false}, {"yesterday", true}, {"2024-01-02", true}} {
		t.Run(tt.in, func(t *testing.T) {
			if err := checkCreated(tt.in); (err != nil) != tt.wantErr {
				t.Errorf("checkCreated(%q) = %v, want error %v", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestImageValidate(t *testing.T) {
	dir := t.TempDir()
	layers := write(t, dir, "layers.json", "{}")
	good := func() ImageOptions {
		return ImageOptions{Output: filepath.Join(dir, "image.json"), Name: "img", Arch: "amd64", OS: "linux", Layers: []string{layers}}
	}
	tests := []struct {
		name    string
		mutate  func(o *ImageOptions)
		wantErr string
	}{
		{"valid", func(*ImageOptions) {}, ""},
		{"no name", func(o *ImageOptions) { o.Name = "" }, "--name"},
		{"no layers", func(o *ImageOptions) { o.Layers = nil }, "no layers"},
		{"from image only", func(o *ImageOptions) { o.Layers = nil; o.FromImage = layers }, ""},
		{"missing layers file", func(o *ImageOptions) { o.Layers = []string{layers + ".gone"} }, layers + ".gone"},
		{"missing config", func(o *ImageOptions) { o.Config = filepath.Join(dir, "config.json") }, "--config " + filepath.Join(dir, "config.json")},
		{"bad created", func(o *ImageOptions) { o.Created = "soon" }, `--created: created time "soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.mutate(&o)
			checkErr(t, "Validate()", o.Validate(), tt.wantErr)
		})
	}
}

func TestDescriptorPath(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"nix:/tmp/image.json", "/tmp/image.json", ""},
		{"nix:result", "result", ""},
		{"./image.json", "./image.json", ""},
		{"nix:", "", "needs a descriptor path"},
		{"", "", "missing image"},
		{"docker://example/img", "", `not the "docker" transport`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := DescriptorPath(tt.in)
			checkErr(t, "DescriptorPath()", err, tt.wantErr)
			if err == nil && got != tt.want {
				t.Errorf("DescriptorPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCopyValidate(t *testing.T) {
	dir := t.TempDir()
	good := func() CopyOptions {
		return CopyOptions{Src: "dir:" + dir, Dest: "oci:" + filepath.Join(dir, "layout") + ":tag"}
	}
	tests := []struct {
		name    string
		mutate  func(o *CopyOptions)
		wantErr string
	}{
		{"valid", func(*CopyOptions) {}, ""},
		{"unknown transport", func(o *CopyOptions) { o.Dest = "nosuch:foo" }, `unknown transport "nosuch"`},
		{"no transport", func(o *CopyOptions) { o.Src = "foo" }, `source "foo"`},
		{"bad docker reference", func(o *CopyOptions) { o.Dest = "docker:no-slashes" }, `destination "docker:no-slashes"`},
		{"compress format", func(o *CopyOptions) { o.DestCompressFormat = "xz" }, `--dest-compress-format "xz"`},
		{"creds", func(o *CopyOptions) { o.DestCreds = ":pw" }, "--dest-creds"},
		{"authfile missing", func(o *CopyOptions) { o.Authfile = filepath.Join(dir, "auth.json") }, "--authfile " + filepath.Join(dir, "auth.json")},
		{"policy missing", func(o *CopyOptions) { o.Policy = filepath.Join(dir, "policy.json") }, "--policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.mutate(&o)
			checkErr(t, "Validate()", o.Validate(), tt.wantErr)
		})
	}
}

// TestBefore runs a command through urfave/cli to check that flags fill the
// struct through their destinations and that Before validates.
func TestBefore(t *testing.T) {
	dir := t.TempDir()
	var o CopyOptions
	ran := false
	app := &cli.App{Commands: []*cli.Command{{
		Name:   "copy",
		Flags:  o.Flags(),
		Before: Before(&o),
		Action: func(*cli.Context) error { ran = true; return nil },
	}}}
	err := app.Run([]string{"nixoci", "copy", "--dest-tls-verify=false", "--additional-tag", "a:1", "--additional-tag", "b:2", "dir:" + dir, "oci:" + dir + "/l:t"})
	if err != nil || !ran {
		t.Fatalf("Run() = %v (ran %v), want nil", err, ran)
	}
	if o.DestTLSVerify || !o.DestTLSVerifySet || !o.SrcTLSVerify || o.SrcTLSVerifySet {
		t.Errorf("TLS flags = src %v (set %v), dest %v (set %v), want src true unset, dest false set", o.SrcTLSVerify, o.SrcTLSVerifySet, o.DestTLSVerify, o.DestTLSVerifySet)
	}
	if got := strings.Join(o.AdditionalTags.Value(), ","); got != "a:1,b:2" {
		t.Errorf("AdditionalTags = %q, want a:1,b:2", got)
	}
	ran = false
	if err := app.Run([]string{"nixoci", "copy", "dir:" + dir}); err == nil || ran {
		t.Errorf("Run() with one argument = %v (ran %v), want an error before the action", err, ran)
	}
}

// TestLayersCacheFlag: --cache, else $NIXOCI_CACHE, fills Cache.
func TestLayersCacheFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"unset", "", nil, ""},
		{"env", "/from/env", nil, "/from/env"},
		{"flag over env", "/from/env", []string{"--cache", "/from/flag"}, "/from/flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NIXOCI_CACHE", tc.env)
			var o LayersOptions
			app := &cli.App{Name: "t", Flags: o.Flags(), Action: func(*cli.Context) error { return nil }}
			if err := app.Run(append([]string{"t"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			if o.Cache != tc.want {
				t.Errorf("Cache = %q, want %q", o.Cache, tc.want)
			}
		})
	}
}
