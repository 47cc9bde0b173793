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
	"time"

	"github.com/sirupsen/logrus"
)

// Accelerator choices for Options.Accel.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// kvmUsable tells whether /dev/kvm can be opened for use.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
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
	timeout              time.Duration
	log                  logrus.FieldLogger
}

// ErrTimeout is wrapped by the error for a VM that did not finish in time.
var ErrTimeout = errors.New("VM timed out")

// consoleLines is how many of the last console lines errors show.
const consoleLines = 40

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
// debug log; its last lines come back for error messages.
func (m *machine) run(ctx context.Context) (console []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.qemu, m.args()...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = nil
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	ring := &lineRing{max: consoleLines}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ring.consume(pr, m.log)
	}()
	m.log.Debugf("vm: %s %s", m.qemu, strings.Join(m.args(), " "))
	err = cmd.Run()
	pw.Close()
	wg.Wait()
	console = ring.lines()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return console, fmt.Errorf("%w after %v", ErrTimeout, m.timeout)
	case ctx.Err() != nil:
		return console, ctx.Err()
	case err != nil:
		return console, fmt.Errorf("running %s: %w", m.qemu, err)
	}
	return console, nil
}

// ansi matches terminal escape sequences the firmware prints.
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[()][A-Za-z0-9]|[A-Za-z])`)

// lineRing keeps the last max lines of the console.
type lineRing struct {
	mu   sync.Mutex
	max  int
	ring []string
}

func (r *lineRing) consume(rd io.Reader, log logrus.FieldLogger) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(ansi.ReplaceAllString(sc.Text(), ""), "\r ")
		if line == "" {
			continue
		}
		log.Debugf("vm: %s", line)
		r.mu.Lock()
		r.ring = append(r.ring, line)
		if len(r.ring) > r.max {
			r.ring = r.ring[len(r.ring)-r.max:]
		}
		r.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, rd)
}

func (r *lineRing) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ring...)
}
