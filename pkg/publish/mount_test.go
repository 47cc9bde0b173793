package publish

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// TestMountFrom pushes a service image, then a second one that shares its
// base layers into another repository, once without and once with
// MountFrom, from a fresh machine each time: with it the base layers are
// mounted and only the new layer and the config are uploaded.
func TestMountFrom(t *testing.T) {
	ctx := testContext(t)
	reg := newRegistry(t)
	// Base layers of random bytes, so that their size survives gzip.
	rnd := rand.New(rand.NewPCG(1, 2))
	var base []descriptor.Path
	for i, name := range []string{"libc", "ssl", "python"} {
		data := make([]byte, 100_000*(i+1))
		for j := range data {
			data[j] = byte(rnd.Uint32())
		}
		base = append(base, rooted(tree(t, map[string]string{"lib/" + name: string(data)})))
	}
	image := func(name, app string) (string, *descriptor.Image) {
		dir := filepath.Join(t.TempDir(), name)
		paths := append(append([]descriptor.Path(nil), base...), rooted(tree(t, map[string]string{"app": app})))
		return dir, writeImage(t, dir, descriptor.Gzip, []string{"/app"}, paths...)
	}
	first, _ := image("first", "first service\n")
	second, img := image("second", "second service\n")
	opts := func(mountFrom ...string) Options {
		return Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), MountFrom: mountFrom}
	}
	if err := Copy(ctx, "nix:"+first, "docker://"+reg.host+"/team/first:v1", opts()); err != nil {
		t.Fatalf("Copy(first) = %v", err)
	}
	reg.seen()

	var baseBytes int64
	for _, l := range img.Layers[:len(base)] {
		baseBytes += l.Size
	}
	newBytes := img.Layers[len(base)].Size

	push := func(repo string, mountFrom ...string) (bytes int64, uploads, mounts int) {
		t.Helper()
		if err := Copy(ctx, "nix:"+second, "docker://"+reg.host+"/"+repo+":v1", opts(mountFrom...)); err != nil {
			t.Fatalf("Copy(second to %s, mount from %v) = %v", repo, mountFrom, err)
		}
		reg.mu.Lock()
		bytes = reg.uploadBytes
		reg.mu.Unlock()
		for _, r := range reg.seen() {
			switch {
			case strings.HasPrefix(r, "POST ") && strings.Contains(r, "mount="):
				mounts++
			case strings.HasPrefix(r, "POST "):
				uploads++
			}
		}
		return bytes, uploads, mounts
	}
	plainBytes, plainUploads, _ := push("team/second-plain")
	t.Logf("without mounts: %d uploads, %d bytes", plainUploads, plainBytes)
	if plainUploads != len(img.Layers)+1 || plainBytes < baseBytes+newBytes {
		t.Errorf("without mounts: %d uploads of %d bytes, want %d uploads of at least %d bytes", plainUploads, plainBytes, len(img.Layers)+1, baseBytes+newBytes)
	}
	// A repository without the layers first: its HEADs fail, the next
	// one has them.
	mountBytes, mountUploads, mounts := push("team/second", "team/nothing-here", reg.host+"/team/first")
	t.Logf("with --mount-from: %d uploads, %d bytes, %d mounts", mountUploads, mountBytes, mounts)
	if mounts != len(base) || mountUploads != 2 {
		t.Errorf("with mounts: %d mounts and %d uploads, want %d mounts and 2 uploads (the new layer and the config)", mounts, mountUploads, len(base))
	}
	if mountBytes >= baseBytes || mountBytes < newBytes {
		t.Errorf("with mounts: %d bytes uploaded, want the new layer's %d and the config, not the base's %d", mountBytes, newBytes, baseBytes)
	}
	// What was mounted is a whole image.
	layout := filepath.Join(t.TempDir(), "pulled")
	if err := Copy(ctx, "docker://"+reg.host+"/team/second:v1", "oci:"+layout, Options{SrcTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir()}); err != nil {
		t.Fatalf("pulling the mounted image: %v", err)
	}
	if m := readLayout(t, layout); len(m.Layers) != len(img.Layers) {
		t.Errorf("pulled %d layers, want %d", len(m.Layers), len(img.Layers))
	}
	if got, want := registryManifest(t, reg.host, "team/second", "v1"), servedManifest(t, second); !bytes.Equal(got, want) {
		t.Errorf("the registry got manifest\n%s\nwant the served one\n%s", got, want)
	}
}

func TestMountFromErrors(t *testing.T) {
	dir, _ := twoLayerImage(t)
	reg := newRegistry(t)
	for _, tc := range []struct {
		name, dest, from, mention string
	}{
		{"not a registry", "oci:" + filepath.Join(t.TempDir(), "l"), "team/base", "not a registry"},
		{"another registry", "docker://" + reg.host + "/team/app:v1", "registry.example.com/team/base", "registry.example.com"},
		{"a tag", "docker://" + reg.host + "/team/app:v1", "team/base:v1", "without a tag"},
		{"not a name", "docker://" + reg.host + "/team/app:v1", "Team/Base", "Team/Base"},
		{"not a nix: source", "docker://" + reg.host + "/team/app:v1", "team/base", "nix: sources"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "nix:" + dir
			if tc.name == "not a nix: source" {
				src = "oci:" + filepath.Join(t.TempDir(), "layout")
			}
			err := Copy(testContext(t), src, tc.dest, Options{DestTLSVerify: boolPtr(false), MountFrom: []string{tc.from}})
			if err == nil {
				t.Fatalf("Copy(mount from %s) = nil, want an error", tc.from)
			}
			if !errors.Is(err, ErrBadOption) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Copy(mount from %s) = %v, want ErrBadOption mentioning %q", tc.from, err, tc.mention)
			}
		})
	}
	if r := reg.seen(); len(r) != 0 {
		t.Errorf("bad mount options still reached the registry: %v", r)
	}
}
