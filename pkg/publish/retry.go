package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/docker/distribution/registry/api/errcode"
	"go.podman.io/image/v5/docker"
)

// maxBackoff caps the doubling wait between retries.
const maxBackoff = time.Minute

// retry runs attempt until it succeeds, fails in a way a new attempt
// cannot mend (see retryable), ctx ends, or it failed times+1 times. Before
// retry n (from 0) it waits delay, or 1s·2ⁿ when delay is 0. The last
// error is returned, saying how many attempts were made when there were
// several.
func retry(ctx context.Context, times int, delay time.Duration, log Logger, attempt func(context.Context) error) error {
	for n := 0; ; n++ {
		err := attempt(ctx)
		if err == nil {
			return nil
		}
		if n >= times || ctx.Err() != nil || !retryable(err) {
			if n > 0 {
				return fmt.Errorf("%w (gave up after %d attempts)", err, n+1)
			}
			return err
		}
		wait := delay
		if wait <= 0 {
			wait = min(time.Second<<n, maxBackoff)
		}
		log.Warnf("copy attempt %d of %d failed, retrying in %v: %v", n+1, times+1, wait, err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// retryable tells whether a failed copy may succeed when tried again: a
// registry answering 5xx, 429 or 408, a connection reset, aborted, timed
// out or closed before the answer was complete, or a stall. Refused
// connections, unknown hosts, credentials, TLS, bad input and local
// errors are final: trying again would only delay the message.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) && !errors.Is(err, ErrStalled) {
		return false
	}
	if errors.Is(err, ErrStalled) || errors.Is(err, docker.ErrTooManyRequests) {
		return true
	}
	var status docker.UnexpectedHTTPStatusError
	if errors.As(err, &status) {
		return retryableStatus(status.StatusCode)
	}
	var ec errcode.Error
	if errors.As(err, &ec) {
		return retryableStatus(ec.Code.Descriptor().HTTPStatusCode)
	}
	var code errcode.ErrorCode
	if errors.As(err, &code) {
		return retryableStatus(code.Descriptor().HTTPStatusCode)
	}
	for _, errno := range []syscall.Errno{syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	// An HTTP exchange that ended early: the server closed the connection
	// before (or while) answering.
	var ue *url.Error
	if errors.As(err, &ue) && (errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, io.ErrUnexpectedEOF)) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// A blob body that ended before its length: the connection closed
	// while the registry was sending it.
	return errors.Is(err, io.ErrUnexpectedEOF)
}

func retryableStatus(code int) bool {
	return code >= http.StatusInternalServerError || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}
