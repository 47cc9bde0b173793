package nixbuild

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/nixoci/nixoci/pkg/build"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// customiseAttrs are the attributes of buildImage's customisation
// derivation (nix/customise.nix): the root tree that extraCommands and
// fakeRootCommands change.
type customiseAttrs struct {
	// CopyToRoot are the paths merged into the tree, in merge order.
	CopyToRoot           []string `json:"copyToRoot"`
	KeepContentsDirlinks bool     `json:"keepContentsDirlinks"`
	ExtraCommands        string   `json:"extraCommands"`
	FakeRootCommands     string   `json:"fakeRootCommands"`
	EnableFakechroot     bool     `json:"enableFakechroot"`
	// Shell is a POSIX shell; Coreutils, Fakeroot and Proot are
	// directories holding bin/ (the last two only when needed).
	Shell     string `json:"shell"`
	Coreutils string `json:"coreutils"`
	Fakeroot  string `json:"fakeroot"`
	Proot     string `json:"proot"`
}

// statBatch is how many files one `stat` process is given.
const statBatch = 512

// customise writes the root tree to $out: the copyToRoot paths merged as
// the image's layer merges them, then changed by extraCommands (in the
// tree, as the build user) and fakeRootCommands (in the tree, under
// fakeroot, and with enableFakechroot under proot with the tree as /).
// The Nix store resets modes and owners of $out, so the ones the commands
// left that the store would not keep are written to $perms as perms
// entries for the tree (a JSON list, the shape of buildImage's perms),
// and the image applies them to its layer: the layer stays a layer of
// store paths, with no tar kept.
func customise(ctx context.Context, a *Attrs, tmp string) error {
	var ca customiseAttrs
	out, err := a.DecodeOut(&ca)
	if err != nil {
		return err
	}
	permsOut, err := a.Output("perms")
	if err != nil {
		return err
	}
	if ca.Shell == "" || ca.Coreutils == "" {
		return errors.New("customise: no shell or coreutils given: pass `runtimeShell` and `coreutils` (or `pkgs`) when importing nixoci's nix/ library")
	}
	if ca.FakeRootCommands != "" && ca.Fakeroot == "" {
		return errors.New("customise: fakeRootCommands needs fakeroot: pass `fakeroot` (or `pkgs`) when importing nixoci's nix/ library")
	}
	if ca.FakeRootCommands != "" && ca.EnableFakechroot && ca.Proot == "" {
		return errors.New("customise: enableFakechroot needs proot: pass `proot` (or `pkgs`) when importing nixoci's nix/ library")
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		return fmt.Errorf("creating output %s: %w", out, err)
	}
	if err := materialise(ctx, a, out, ca.CopyToRoot, ca.KeepContentsDirlinks); err != nil {
		return err
	}
	path := filepath.Join(ca.Coreutils, "bin")
	if ca.Fakeroot != "" {
		path = filepath.Join(ca.Fakeroot, "bin") + ":" + path
	}
	if ca.Proot != "" {
		path = filepath.Join(ca.Proot, "bin") + ":" + path
	}
	env := commandEnv(path)
	if ca.ExtraCommands != "" {
		cmd := exec.CommandContext(ctx, ca.Shell, "-e", "-c", ca.ExtraCommands)
		if err := runIn(cmd, out, env, "extraCommands"); err != nil {
			return err
		}
	}
	state := ""
	if ca.FakeRootCommands != "" {
		state = filepath.Join(tmp, "fakeroot.state")
		args := []string{"-s", state, "--"}
		dir := out
		if ca.EnableFakechroot {
			// As dockerTools, only fakeRootCommands run in the chroot.
			// The tree as /, with the store (and so the tools) and the
			// kernel's file systems bound in, as dockerTools does.
			args = append(args, filepath.Join(ca.Proot, "bin", "proot"), "-r", out, "-w", "/",
				"-b", "/dev", "-b", "/proc", "-b", "/sys", "-b", filepath.Dir(out))
			dir = "/"
		}
		args = append(args, ca.Shell, "-e", "-c", ca.FakeRootCommands)
		cmd := exec.CommandContext(ctx, filepath.Join(ca.Fakeroot, "bin", "fakeroot"), args...)
		if err := runIn(cmd, dir, env, "fakeRootCommands"); err != nil {
			return err
		}
	}
	entries, err := listTree(out)
	if err != nil {
		return err
	}
	if state != "" {
		// fakeroot's LD_PRELOAD cannot see Go's system calls: read what
		// the commands left with coreutils' stat, in the same session.
		if err := fakerootStat(ctx, ca, state, out, env, entries); err != nil {
			return err
		}
	}
	perms := treePerms(out, entries, state != "")
	data, err := json.MarshalIndent(perms, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding perms: %w", err)
	}
	if err := os.WriteFile(permsOut, append(data, '\n'), 0o444); err != nil {
		return fmt.Errorf("writing perms %s: %w", permsOut, err)
	}
	return nil
}

// materialise writes the merged copyToRoot paths into dir, as the layer's
// stream has them: directories 0555 (dir itself writable), files 0444 or
// 0555, symlinks as they are.
func materialise(ctx context.Context, a *Attrs, dir string, roots []string, keepDirlinks bool) error {
	if len(roots) == 0 {
		return nil
	}
	paths := make([]descriptor.Path, len(roots))
	for i, r := range roots {
		paths[i] = descriptor.Path{Path: r, Rewrite: &descriptor.Rewrite{Regex: "^" + regexp.QuoteMeta(r), Repl: ""}, KeepDirlinks: keepDirlinks}
	}
	if err := build.LogReplacements(ctx, paths, a.Log); err != nil {
		return fmt.Errorf("merging copyToRoot: %w", err)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := tarstream.Write(ctx, pw, paths, tarstream.WithoutShares())
		pw.CloseWithError(err)
		done <- err
	}()
	err := extract(pr, dir)
	pr.CloseWithError(errors.New("extraction stopped"))
	if werr := <-done; werr != nil {
		return fmt.Errorf("merging copyToRoot: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("copying copyToRoot into %s: %w", dir, err)
	}
	return nil
}

// extract unpacks a tar of regular files, directories and symlinks into dir.
func extract(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	type dirMode struct {
		path string
		mode os.FileMode
	}
	var dirs []dirMode
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !filepath.IsLocal(name) {
			return fmt.Errorf("entry %q leaves the tree", h.Name)
		}
		dst := filepath.Join(dir, name)
		mode := os.FileMode(h.Mode & 0o777)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{dst, mode})
		case tar.TypeReg:
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Chmod(dst, mode)
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q has tar type %q", h.Name, h.Typeflag)
		}
	}
	// Deepest first, so that a read-only parent does not stop its children.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}

// commandEnv is the builder's environment with PATH set to path.
func commandEnv(path string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+path)
}

// runIn runs cmd in dir, its output going to the build log; what names
// the failing argument.
func runIn(cmd *exec.Cmd, dir string, env []string, what string) error {
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s failed: %w (its output is above in the build log)", what, err)
	}
	return nil
}

// treeEntry is one file of the tree and the mode and owner it has.
type treeEntry struct {
	rel      string // relative to the tree, "." for the tree itself
	dir      bool
	symlink  bool
	mode     uint32 // permission bits, 07777
	uid, gid uint32
}

// listTree lists every entry below dir (not dir itself), sorted, with its
// mode as this process sees it.
func listTree(dir string) ([]treeEntry, error) {
	var out []treeEntry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		e := treeEntry{rel: rel, dir: d.IsDir(), symlink: d.Type()&fs.ModeSymlink != 0}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.mode, e.uid, e.gid = st.Mode&0o7777, st.Uid, st.Gid
		} else {
			e.mode = uint32(fi.Mode().Perm())
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the customised tree %s: %w", dir, err)
	}
	return out, nil
}

// fakerootStat replaces the entries' modes and owners with what coreutils'
// stat sees in the saved fakeroot session.
func fakerootStat(ctx context.Context, ca customiseAttrs, state, dir string, env []string, entries []treeEntry) error {
	stat := filepath.Join(ca.Coreutils, "bin", "stat")
	for start := 0; start < len(entries); start += statBatch {
		batch := entries[start:min(start+statBatch, len(entries))]
		args := []string{"-i", state}
		if os.Geteuid() == 0 {
			// As root, chown really changes the owner and fakeroot records
			// nothing: read the real owners of files it does not know.
			// Otherwise those belong to the build user and show as root.
			args = append(args, "--unknown-is-real")
		}
		args = append(args, "--", stat, "--printf", `%f %u %g\n`, "--")
		for _, e := range batch {
			args = append(args, "./"+e.rel)
		}
		cmd := exec.CommandContext(ctx, filepath.Join(ca.Fakeroot, "bin", "fakeroot"), args...)
		cmd.Dir, cmd.Env = dir, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("reading modes and owners under fakeroot with %s: %w: %s", stat, err, strings.TrimSpace(stderr.String()))
		}
		sc := bufio.NewScanner(&stdout)
		i := 0
		for sc.Scan() {
			if i >= len(batch) {
				return fmt.Errorf("%s printed more lines than files it was given", stat)
			}
			f := strings.Fields(sc.Text())
			if len(f) != 3 {
				return fmt.Errorf("%s printed %q for %s: want \"MODE UID GID\"", stat, sc.Text(), batch[i].rel)
			}
			raw, err1 := strconv.ParseUint(f[0], 16, 32)
			uid, err2 := strconv.ParseUint(f[1], 10, 32)
			gid, err3 := strconv.ParseUint(f[2], 10, 32)
			if err := errors.Join(err1, err2, err3); err != nil {
				return fmt.Errorf("%s printed %q for %s: %w", stat, sc.Text(), batch[i].rel, err)
			}
			e := &batch[i]
			e.mode, e.uid, e.gid = uint32(raw)&0o7777, uint32(uid), uint32(gid)
			i++
		}
		if i != len(batch) {
			return fmt.Errorf("%s printed %d lines for %d files", stat, i, len(batch))
		}
	}
	return nil
}

// treePerms returns the perms entries that restore, in the image, the
// modes the Nix store does not keep (it keeps 0444 and 0555 files and 0555
// directories) and, with owners (fakeRootCommands), every owner but root.
// An owner shared by a whole directory tree is one entry for the tree.
func treePerms(root string, entries []treeEntry, owners bool) []closure.PermSpec {
	var perms []closure.PermSpec
	exact := func(rel string) string { return "^" + regexp.QuoteMeta(filepath.Join(root, rel)) + "$" }
	for _, e := range entries {
		if e.symlink {
			continue
		}
		canonical := uint32(0o444)
		if e.dir || e.mode&0o100 != 0 {
			canonical = 0o555
		}
		if e.mode != canonical {
			perms = append(perms, closure.PermSpec{Path: root, Perm: descriptor.Perm{Regex: exact(e.rel), Mode: fmt.Sprintf("%04o", e.mode)}})
		}
	}
	if !owners {
		return perms
	}
	// Entries are in walk order: a directory's tree follows it.
	below := func(i int) int { // end of entries[i]'s tree
		j := i + 1
		for j < len(entries) && strings.HasPrefix(entries[j].rel, entries[i].rel+"/") {
			j++
		}
		return j
	}
	for i := 0; i < len(entries); {
		e := entries[i]
		if e.uid == 0 && e.gid == 0 {
			i++
			continue
		}
		end := i + 1
		regex := exact(e.rel)
		if e.dir {
			j := below(i)
			same := true
			for k := i + 1; k < j && same; k++ {
				same = entries[k].uid == e.uid && entries[k].gid == e.gid
			}
			if same {
				end = j
				regex = "^" + regexp.QuoteMeta(filepath.Join(root, e.rel)) + "(/.*)?$"
			}
		}
		uid, gid := int(e.uid), int(e.gid)
		perms = append(perms, closure.PermSpec{Path: root, Perm: descriptor.Perm{Regex: regex, UID: &uid, GID: &gid}})
		i = end
	}
	return perms
}
