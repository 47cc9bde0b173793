package options

import (
	"path/filepath"
	"testing"
)

func TestSaveValidate(t *testing.T) {
	dir := t.TempDir()
	img := write(t, dir, "image.json", "{}")
	good := func() SaveOptions {
		return SaveOptions{Output: filepath.Join(dir, "out.tar"), Compression: "none", Images: []string{img}}
	}
	tests := []struct {
		name    string
		mutate  func(o *SaveOptions)
		wantErr string
	}{
		{"valid", func(*SaveOptions) {}, ""},
		{"no images", func(o *SaveOptions) { o.Images = nil }, "no images"},
		{"missing image", func(o *SaveOptions) { o.Images = []string{filepath.Join(dir, "gone.json")} }, "gone.json"},
		{"compression", func(o *SaveOptions) { o.Compression = "xz" }, `--compression "xz"`},
		{"tag", func(o *SaveOptions) { _ = o.Tags.Set("app:v1") }, ""},
		{"tag without tag", func(o *SaveOptions) { _ = o.Tags.Set("app") }, "has no tag"},
		{"bad tag", func(o *SaveOptions) { _ = o.Tags.Set("App:v1") }, `--tag "App:v1"`},
		{"tag with two images", func(o *SaveOptions) { _ = o.Tags.Set("app:v1"); o.Images = append(o.Images, img) }, "2 are given"},
		{"output directory missing", func(o *SaveOptions) { o.Output = filepath.Join(dir, "nope", "out.tar") }, "create it first"},
		{"stdout a terminal", func(o *SaveOptions) { o.Output = ""; o.stdoutTerminal = true }, "terminal"},
		{"stdout a pipe", func(o *SaveOptions) { o.Output = "" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.mutate(&o)
			checkErr(t, "Validate()", o.Validate(), tt.wantErr)
		})
	}
}

func TestExportValidate(t *testing.T) {
	dir := t.TempDir()
	img := write(t, dir, "saved.tar", "x")
	tests := []struct {
		name    string
		o       ExportOptions
		wantErr string
	}{
		{"valid", ExportOptions{Image: img, Output: filepath.Join(dir, "rootfs.tar")}, ""},
		{"missing image", ExportOptions{Image: filepath.Join(dir, "gone.tar")}, "gone.tar"},
		{"stdout a terminal", ExportOptions{Image: img, stdoutTerminal: true}, "docker import"},
		{"output is a directory", ExportOptions{Image: img, Output: dir}, "is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, "Validate()", tt.o.Validate(), tt.wantErr)
		})
	}
}

func TestImageFromImageCompression(t *testing.T) {
	dir := t.TempDir()
	base := write(t, dir, "base.tar", "x")
	o := ImageOptions{Output: filepath.Join(dir, "image.json"), Name: "img", FromImage: base, FromImageCompression: "lz4"}
	checkErr(t, "Validate()", o.Validate(), `--from-image-compression "lz4"`)
	o.FromImageCompression = "zstd"
	checkErr(t, "Validate()", o.Validate(), "")
}
