package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// waitDelay bounds how long a killed command may keep its output open.
const waitDelay = 5 * time.Second

// Cmd is a command for Run: a program, its arguments and where it runs.
type Cmd struct {
	Name string
	Args []string
	// Dir is the working directory; empty means the test's own.
	Dir string
	// Env ("KEY=value") is added to the test's environment.
	Env []string
	// Timeout, when not zero, bounds the run besides the context.
	Timeout time.Duration
}

// Result is how a finished command ended and what it printed.
type Result struct {
	Stdout, Stderr string
	// Err is nil when the command exited with status 0. When the context
	// or the timeout killed it, Err says so.
	Err error
	// State is the process's exit state (with its resource usage), nil if
	// it did not start.
	State *os.ProcessState
}

// String shows the error, standard output and the last 60 lines of
// standard error, for failure messages.
func (r Result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.Err, r.Stdout, Tail(r.Stderr, 60))
}

// Run runs c to completion with no standard input, killing it when ctx
// ends or c.Timeout passes, and returns what it printed.
func (c Cmd) Run(ctx context.Context) Result {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.Timeout, fmt.Errorf("%s timed out after %v", c.Name, c.Timeout))
		defer cancel()
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Dir = c.Dir
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Err: err, State: cmd.ProcessState}
}

// Must is Run that fails the test when the command fails.
func (c Cmd) Must(t testing.TB, ctx context.Context) Result {
	t.Helper()
	r := c.Run(ctx)
	if r.Err != nil {
		t.Fatalf("%s %s failed:\n%s", c.Name, strings.Join(c.Args, " "), r)
	}
	return r
}

// Run runs name with args until it exits or ctx ends; see Cmd.Run.
func Run(ctx context.Context, name string, args ...string) Result {
	return Cmd{Name: name, Args: args}.Run(ctx)
}

// Must runs name with args until it exits or ctx ends, and fails the test
// when the command fails.
func Must(t testing.TB, ctx context.Context, name string, args ...string) Result {
	t.Helper()
	return Cmd{Name: name, Args: args}.Must(t, ctx)
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
