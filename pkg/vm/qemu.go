package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/pkg/vm/wire"
)

// Accelerator choices for Options.Accel.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// kvmUsable tells whether the KVM device (/dev/kvm when dev is empty) can
// be opened for reading and writing, and if not, why.
func kvmUsable(dev string) error {
	if dev == "" {
		dev = "/dev/kvm"
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// disk is a raw disk attached to the VM.
type disk struct {
	file, serial string
	readOnly     bool
}

// machine is one qemu invocation.
type machine struct {
	qemu, kernel, initrd string
	cmdline              string
	memoryMiB            int64
	accel                string
	disks                []disk
	// timeout bounds the whole run.
	timeout time.Duration
	// bootDeadline, when not zero, is how long the guest init has to
	// report that it is up (wire.BootMarker on the console) before qemu
	// is killed.
	bootDeadline time.Duration
	log          logrus.FieldLogger
}

// ErrTimeout is wrapped by the error for a VM that did not finish in time.
var ErrTimeout = errors.New("VM timed out")

// errNoBootReport is wrapped by machine.run's error when the guest init did
// not report that it is up within the boot deadline.
var errNoBootReport = errors.New("no boot report from the guest init")

// consoleLines is how many of the last console lines errors show.
const consoleLines = 40

// runReport is what machine.run saw, whether or not it failed.
type runReport struct {
	// console holds the console's last lines (qemu's own messages
	// included: its stdout and stderr are the console).
	console []string
	// up tells whether the guest init reported that it runs.
	up bool
	// upAfter is how long after qemu started it did.
	upAfter time.Duration
}

func (m *machine) args() []string {
	args := []string{
		"-nographic", "-monitor", "none", "-serial", "stdio",
		"-no-reboot", "-nic", "none", "-nodefaults",
		"-m", fmt.Sprintf("%dM", m.memoryMiB),
		"-kernel", m.kernel, "-initrd", m.initrd,
		"-append", m.cmdline,
	}
	if m.accel == AccelKVM {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg")
	}
	for i, d := range m.disks {
		opt := fmt.Sprintf("file=%s,format=raw,if=none,id=d%d,cache=unsafe", qemuEscape(d.file), i)
		if d.readOnly {
			opt += ",readonly=on"
		}
		args = append(args, "-drive", opt, "-device", fmt.Sprintf("virtio-blk-pci,drive=d%d,serial=%s", i, d.serial))
	}
	return args
}

// qemuEscape doubles commas, qemu's escape in option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// run boots the VM and waits for it to power off. The console goes to the
// debug log; its last lines come back for error messages. With a boot
// deadline, qemu is killed when the guest init has not reported that it is
// up by then, and the error wraps errNoBootReport.
func (m *machine) run(ctx context.Context) (*runReport, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	// qemuCtx is cancelled at the boot deadline, which kills qemu.
	qemuCtx, killQemu := context.WithCancel(ctx)
	defer killQemu()
	args := m.args()
	cmd := exec.CommandContext(qemuCtx, m.qemu, args...)
	// qemu and whatever a wrapper script started are one process group,
	// killed together, so that no child keeps the console pipe (and a
	// stuck KVM vCPU) alive after a kill.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		} else if err != nil {
			return fmt.Errorf("killing qemu: %w", err)
		}
		return nil
	}
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = nil
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	con := &consoleWatch{ring: lineRing{max: consoleLines}, up: make(chan struct{}), start: start}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		con.consume(pr, m.log)
	}()
	m.log.Debugf("vm: %s %s", m.qemu, strings.Join(args, " "))
	err := cmd.Start()
	if err != nil {
		pw.Close()
		wg.Wait()
		return &runReport{}, fmt.Errorf("starting %s: %w", m.qemu, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var deadline <-chan time.Time
	if m.bootDeadline > 0 {
		t := time.NewTimer(m.bootDeadline)
		defer t.Stop()
		deadline = t.C
	}
	up := con.up
	noBootReport := false
	for done := false; !done; {
		select {
		case <-up:
			up, deadline = nil, nil
		case <-deadline:
			deadline = nil
			if !con.isUp() {
				noBootReport = true
				killQemu()
			}
		case err = <-waited:
			done = true
		}
	}
	pw.Close()
	wg.Wait()
	rep := &runReport{console: con.ring.lines()}
	rep.up, rep.upAfter = con.upState()
	switch {
	case noBootReport:
		return rep, fmt.Errorf("%w within %v", errNoBootReport, m.bootDeadline)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return rep, fmt.Errorf("%w after %v", ErrTimeout, m.timeout)
	case ctx.Err() != nil:
		return rep, ctx.Err()
	case err != nil:
		return rep, fmt.Errorf("running %s: %w", m.qemu, err)
	}
	return rep, nil
}

// consoleWatch reads the console, keeping its last lines and noting when
// the guest init reports that it is up.
type consoleWatch struct {
	ring lineRing
	// up is closed when the boot marker is seen.
	up chan struct{}

	// start is when qemu was started.
	start time.Time

	mu      sync.Mutex
	seen    bool
	upAfter time.Duration
}

func (c *consoleWatch) isUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen
}

func (c *consoleWatch) upState() (bool, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen, c.upAfter
}

func (c *consoleWatch) consume(rd io.Reader, log logrus.FieldLogger) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(ansi.ReplaceAllString(sc.Text(), ""), "\r ")
		if line == "" {
			continue
		}
		log.Debugf("vm: %s", line)
		c.ring.add(line)
		if strings.Contains(line, wire.BootMarker) {
			c.mu.Lock()
			if !c.seen {
				c.seen = true
				c.upAfter = time.Since(c.start)
				close(c.up)
			}
			c.mu.Unlock()
		}
	}
	_, _ = io.Copy(io.Discard, rd)
}

// ansi matches terminal escape sequences the firmware prints.
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[()][A-Za-z0-9]|[A-Za-z])`)

// lineRing keeps the last max lines of the console.
type lineRing struct {
	mu   sync.Mutex
	max  int
	ring []string
}

func (r *lineRing) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring = append(r.ring, line)
	if len(r.ring) > r.max {
		r.ring = r.ring[len(r.ring)-r.max:]
	}
}

func (r *lineRing) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ring...)
}
