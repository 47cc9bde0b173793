package guest

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixoci/nixoci/pkg/vm/wire"
)

// Init runs the guest when this process is the VM's init (PID 1 with
// NIXOCI_GUEST=1 in its environment, which the kernel command line sets)
// and powers the VM off when done, never returning. Anywhere else it
// returns false at once. Call it first thing in main:
//
//	if guest.Init() { return }
func Init() bool {
	if os.Getpid() != 1 || os.Getenv(wire.GuestEnv) != "1" {
		return false
	}
	// The host waits for this line to know the VM booted (and falls back
	// from KVM to TCG when it does not come).
	fmt.Fprintln(os.Stderr, wire.BootMarker)
	g := &guest{console: os.Stderr, start: time.Now(), timings: map[string]int64{}}
	g.main()
	powerOff()
	return true
}

// guest holds the state of one run.
type guest struct {
	console io.Writer
	start   time.Time
	timings map[string]int64
	out     *os.File // the output disk, once found
	job     wire.Job
}

func (g *guest) say(format string, args ...any) {
	fmt.Fprintf(g.console, "nixoci-guest: "+format+"\n", args...)
}

// step runs fn and records how long it took under name.
func (g *guest) step(name string, fn func() error) error {
	t := time.Now()
	err := fn()
	g.timings[name] = time.Since(t).Milliseconds()
	g.say("%s: %v", name, time.Since(t).Round(time.Millisecond))
	return err
}

// main runs the job and writes a result. Errors are written to the output
// disk when it was found, and always to the console.
func (g *guest) main() {
	defer func() {
		if r := recover(); r != nil {
			g.fail(fmt.Errorf("guest panic: %v\n%s", r, debug.Stack()))
		}
	}()
	res, err := g.run()
	if err != nil {
		g.fail(err)
		return
	}
	if err := g.writeResult(res); err != nil {
		g.say("error: %v", err)
	}
}

// fail reports err on the console and, when possible, on the output disk.
func (g *guest) fail(err error) {
	g.say("error: %v", err)
	if g.out == nil {
		return
	}
	if werr := g.writeResult(&wire.Result{Status: wire.StatusError, Error: err.Error()}); werr != nil {
		g.say("error: %v", werr)
	}
}

// writeResult writes the header block last, after the sections it points
// to are on the disk, and flushes it.
func (g *guest) writeResult(res *wire.Result) error {
	g.timings["total"] = time.Since(g.start).Milliseconds()
	res.Timings = g.timings
	block, err := wire.EncodeHeader(wire.MagicOutput, res)
	if err != nil {
		return err
	}
	if err := g.out.Sync(); err != nil {
		return fmt.Errorf("flushing output disk: %w", err)
	}
	if _, err := g.out.WriteAt(block, 0); err != nil {
		return fmt.Errorf("writing result header: %w", err)
	}
	if err := g.out.Sync(); err != nil {
		return fmt.Errorf("flushing output disk: %w", err)
	}
	return nil
}

func powerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "nixoci-guest: power off: %v\n", err)
	}
	// PID 1 must not exit: that would panic the kernel.
	select {}
}
