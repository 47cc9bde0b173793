package options

import (
	"path/filepath"
	"testing"
)

func TestIndexValidate(t *testing.T) {
	dir := t.TempDir()
	image := write(t, dir, "image.json", "{}")
	good := func() IndexOptions {
		return IndexOptions{Output: filepath.Join(dir, "index.json"), Name: "app", Images: []string{image}}
	}
	for _, tt := range []struct {
		name    string
		mutate  func(o *IndexOptions)
		wantErr string
	}{
		{"valid", func(*IndexOptions) {}, ""},
		{"no output", func(o *IndexOptions) { o.Output = "" }, "missing -o"},
		{"output in a missing directory", func(o *IndexOptions) { o.Output = filepath.Join(dir, "no", "index.json") }, "create it first"},
		{"no name", func(o *IndexOptions) { o.Name = " " }, "--name"},
		{"no images", func(o *IndexOptions) { o.Images = nil }, "no images"},
		{"missing image", func(o *IndexOptions) { o.Images = []string{image + ".gone"} }, image + ".gone"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.mutate(&o)
			checkErr(t, "Validate()", o.Validate(), tt.wantErr)
		})
	}
}
