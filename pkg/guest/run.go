package guest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixoci/nixoci/pkg/vm/wire"
)

// Where the guest puts things.
const (
	lowerDir   = "/mnt/lower"   // the image's files
	extraDir   = "/mnt/extra"   // the script's closure, the script and mount points
	scratchDir = "/mnt/scratch" // overlay upper and work (diskSize)
	mergedDir  = "/mnt/root"    // the script's /
	// ScriptPath is where the script is, inside the script's root. It is
	// in a lower layer, so it is never part of the changes.
	ScriptPath = "/nix/store/.nixoci-run-as-root"
	// maxLog is how much of the script's output is kept (its tail).
	maxLog = 4 << 20
)

func (g *guest) run() (*wire.Result, error) {
	if err := g.step("mount", mountBase); err != nil {
		return nil, err
	}
	if err := g.step("modules", func() error {
		n, err := loadModules()
		g.say("loaded %d kernel modules", n)
		return err
	}); err != nil {
		return nil, err
	}
	disks, err := findDisks([]string{wire.SerialInput, wire.SerialOutput, wire.SerialSwap}, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if g.out, err = os.OpenFile(disks[wire.SerialOutput], os.O_RDWR, 0); err != nil {
		return nil, fmt.Errorf("opening output disk: %w", err)
	}
	in, err := os.Open(disks[wire.SerialInput])
	if err != nil {
		return nil, fmt.Errorf("opening input disk: %w", err)
	}
	defer in.Close()
	if _, err := wire.ReadHeader(in, wire.MagicInput, &g.job); err != nil {
		return nil, fmt.Errorf("input disk: %w", err)
	}
	if err := swapOn(disks[wire.SerialSwap]); err != nil {
		return nil, err
	}
	if err := g.step("unpack", func() error { return g.unpack(in) }); err != nil {
		return nil, err
	}
	if err := g.step("overlay", g.mountOverlay); err != nil {
		return nil, err
	}
	oom := oomKills()
	res := &wire.Result{}
	log := &tail{max: maxLog}
	if err := g.step("script", func() error { return g.runScript(log, res) }); err != nil {
		return nil, err
	}
	res.OutOfMemory = oomKills() > oom
	var st unix.Statfs_t
	if err := unix.Statfs(scratchDir, &st); err == nil {
		res.DiskFull = st.Bavail*uint64(st.Bsize) < 64<<10
	}
	tarEnd := int64(wire.HeaderSize)
	if res.ExitCode == 0 && res.Signal == "" && !res.DiskFull && !res.OutOfMemory {
		res.Status = wire.StatusOK
		if err := g.step("diff", func() error {
			var err error
			tarEnd, err = g.writeChanges(res)
			return err
		}); err != nil {
			return nil, err
		}
	} else {
		res.Status = wire.StatusScriptFailed
	}
	res.Log = wire.Section{Offset: wire.AlignUp(tarEnd), Length: int64(log.buf.Len())}
	res.LogTruncated = log.dropped > 0
	if res.Log.Offset+res.Log.Length > g.job.OutputSize {
		res.Log.Length = 0
	} else if _, err := g.out.WriteAt(log.buf.Bytes(), res.Log.Offset); err != nil {
		return nil, fmt.Errorf("writing script output to output disk: %w", err)
	}
	return res, nil
}

// unpack fills the lower trees: the image's layers in order, then the
// script's closure and the script itself.
func (g *guest) unpack(in *os.File) error {
	j := &g.job
	for _, m := range []mount{
		{"tmpfs", lowerDir, "tmpfs", 0, fmt.Sprintf("size=%dm,nr_inodes=0,mode=0755", j.LowerMiB)},
		{"tmpfs", extraDir, "tmpfs", 0, fmt.Sprintf("size=%dm,nr_inodes=0,mode=0755", j.LowerMiB)},
		{"tmpfs", scratchDir, "tmpfs", 0, fmt.Sprintf("size=%dm,nr_inodes=0,mode=0755", j.UpperMiB)},
	} {
		if err := doMount(m); err != nil {
			return err
		}
	}
	for i, s := range j.Layers {
		name := fmt.Sprintf("image layer %d", i+1)
		var n int
		err := inRoot(lowerDir, func() error {
			var err error
			n, err = applyTar(bufio.NewReaderSize(s.Reader(in), 1<<20), name)
			return err
		})
		if err != nil {
			return g.spaceHint(err, "the image's files")
		}
		g.say("%s: %d entries", name, n)
	}
	if j.Closure != nil {
		err := inRoot(extraDir, func() error {
			_, err := applyTar(bufio.NewReaderSize(j.Closure.Reader(in), 1<<20), "the script's closure")
			return err
		})
		if err != nil {
			return g.spaceHint(err, "the script's closure")
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "nix/store"} {
		if err := os.MkdirAll(filepath.Join(extraDir, d), 0o755); err != nil {
			return fmt.Errorf("creating /%s: %w", d, err)
		}
	}
	script := make([]byte, j.Script.Length)
	if _, err := io.ReadFull(j.Script.Reader(in), script); err != nil {
		return fmt.Errorf("reading script from input disk: %w", err)
	}
	if err := os.WriteFile(filepath.Join(extraDir, ScriptPath), script, 0o555); err != nil {
		return fmt.Errorf("writing script: %w", err)
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(scratchDir, d), 0o755); err != nil {
			return fmt.Errorf("creating overlay %s directory: %w", d, err)
		}
	}
	return nil
}

func (g *guest) spaceHint(err error, what string) error {
	if errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("%w (no space left for %s: this is a bug in sizing the VM's tmpfs, %d MiB)", err, what, g.job.LowerMiB)
	}
	return err
}

// mountOverlay mounts the script's root: the closure over the image, with
// changes going to the scratch space; then /proc, /sys and /dev in it.
func (g *guest) mountOverlay() error {
	base := fmt.Sprintf("lowerdir=%s:%s,upperdir=%s/upper,workdir=%s/work", extraDir, lowerDir, scratchDir, scratchDir)
	// redirect_dir and metacopy off: every change is a full copy in the
	// upper directory, which is what a layer holds.
	err := doMount(mount{"overlay", mergedDir, "overlay", 0, base + ",redirect_dir=off,metacopy=off,index=off"})
	if errors.Is(err, unix.EINVAL) {
		err = doMount(mount{"overlay", mergedDir, "overlay", 0, base})
	}
	if err != nil {
		return err
	}
	for _, m := range []mount{
		{"proc", mergedDir + "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", mergedDir + "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", mergedDir + "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	} {
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// runScript runs the script as root in the merged root, its output going
// to the console and to log.
func (g *guest) runScript(log *tail, res *wire.Result) error {
	cmd := &exec.Cmd{
		Path:   ScriptPath,
		Args:   []string{ScriptPath},
		Dir:    "/",
		Env:    g.job.Env,
		Stdout: io.MultiWriter(log, g.console),
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:     mergedDir,
			Setsid:     true,
			Credential: &syscall.Credential{Uid: 0, Gid: 0},
		},
	}
	head, _ := os.ReadFile(filepath.Join(extraDir, ScriptPath))
	if !bytes.HasPrefix(head, []byte("#!")) {
		shell := g.job.Shell
		if shell == "" {
			shell = "/bin/sh"
		}
		cmd.Path, cmd.Args = shell, []string{shell, ScriptPath}
	}
	cmd.Stderr = cmd.Stdout
	g.say("running the script: %v", cmd.Args)
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		ws := exit.Sys().(syscall.WaitStatus)
		res.ExitCode = ws.ExitStatus()
		if ws.Signaled() {
			res.Signal = unix.SignalName(ws.Signal())
			res.ExitCode = 128 + int(ws.Signal())
		}
	case err != nil:
		if errors.Is(err, os.ErrNotExist) && cmd.Path != ScriptPath {
			return fmt.Errorf("starting the script: the image has no %s and the script has no #! line: start the script with a #! line naming an interpreter in the image or its closure, or pass a shell", cmd.Path)
		}
		return fmt.Errorf("starting the script %v: %w", cmd.Args, err)
	}
	killAll()
	for _, d := range []string{"dev", "sys", "proc"} {
		_ = unix.Unmount(filepath.Join(mergedDir, d), unix.MNT_DETACH)
	}
	g.say("script exit status %d%s", res.ExitCode, map[bool]string{true: " (" + res.Signal + ")", false: ""}[res.Signal != ""])
	return nil
}

// writeChanges writes the layer tar to the output disk after the header
// block and returns where it ends.
func (g *guest) writeChanges(res *wire.Result) (int64, error) {
	// Flush the overlay's state to the upper directory.
	_ = unix.Unmount(mergedDir, 0)
	limit := g.job.OutputSize - wire.HeaderSize
	cw := &limitWriter{w: io.NewOffsetWriter(g.out, wire.HeaderSize), left: limit}
	bw := bufio.NewWriterSize(cw, 1<<20)
	d, err := diff(filepath.Join(scratchDir, "upper"), g.job.Created, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		if errors.Is(err, errFull) {
			return 0, fmt.Errorf("the changes do not fit in the output disk (%d bytes)", limit)
		}
		return 0, err
	}
	res.Tar = wire.Section{Offset: wire.HeaderSize, Length: cw.n}
	res.Entries = d.entries
	res.StoreWritesTotal = len(d.store)
	res.StoreWrites = d.store
	if len(d.store) > wire.MaxStoreWrites {
		res.StoreWrites = d.store[:wire.MaxStoreWrites]
	}
	for _, s := range d.skipped {
		g.say("warning: %s is a socket and is left out of the layer", s)
	}
	g.say("changes: %d entries, %s bytes", d.entries, strconv.FormatInt(cw.n, 10))
	return wire.HeaderSize + cw.n, nil
}

var errFull = errors.New("output disk full")

type limitWriter struct {
	w    io.Writer
	n    int64
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errFull
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	l.left -= int64(n)
	return n, err
}

// tail keeps the last max bytes written to it.
type tail struct {
	max     int
	buf     bytes.Buffer
	dropped int64
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.dropped += int64(over)
		rest := append([]byte(nil), t.buf.Bytes()[over:]...)
		t.buf.Reset()
		t.buf.Write(rest)
	}
	return len(p), nil
}
