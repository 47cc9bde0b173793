package publish

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/docker/distribution/registry/api/errcode"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
)

var (
	// ErrUnknownTransport is wrapped by the error for a reference whose
	// transport prefix is not registered.
	ErrUnknownTransport = errors.New("unknown transport")
	// ErrUnauthorized is wrapped by the error for credentials a registry
	// rejected (or that it needs and were not given).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnreachable is wrapped by the error for a registry or daemon that
	// could not be connected to.
	ErrUnreachable = errors.New("unreachable")
	// ErrTLS is wrapped by the error for a registry whose TLS handshake or
	// certificate failed, or that speaks plain HTTP where HTTPS was asked.
	ErrTLS = errors.New("TLS failed")
	// ErrStalled is wrapped by the error for an attempt that moved too
	// little for Options.StallTimeout.
	ErrStalled = errors.New("copy stalled")
)

// Side is one end of a copy.
type Side string

const (
	// Source is the side images are read from.
	Source Side = "source"
	// Destination is the side images are written to.
	Destination Side = "destination"
)

// RegistryError is a failure to talk to the registry of one side of a
// copy. It says which side, so that a caller can point at the setting of
// that side (credentials, TLS verification).
type RegistryError struct {
	// Side is the side whose registry failed.
	Side Side
	// Ref is that side's reference as the user wrote it.
	Ref string
	// Registry is the registry's HOST[:PORT].
	Registry string
	// Kind is ErrUnauthorized, ErrTLS or ErrUnreachable.
	Kind error
	// Err is the cause.
	Err error
}

func (e *RegistryError) Error() string {
	switch e.Kind {
	case ErrUnauthorized:
		return fmt.Sprintf("%s %s: registry %s refused the credentials (%v): check the %s credentials or the auth file entry for %s: %v", e.Side, e.Ref, e.Registry, e.Kind, e.Side, e.Registry, e.Err)
	case ErrTLS:
		return fmt.Sprintf("%s %s: TLS with %s failed: for a registry without (valid) TLS, turn off TLS verification for the %s: %v", e.Side, e.Ref, e.Registry, e.Side, e.Err)
	case ErrUnreachable:
		return fmt.Sprintf("%s %s: registry %s is %v: check the address and that the registry is running: %v", e.Side, e.Ref, e.Registry, e.Kind, e.Err)
	}
	return fmt.Sprintf("%s %s: registry %s: %v", e.Side, e.Ref, e.Registry, e.Err)
}

// Unwrap makes both the kind and the cause visible to errors.Is and As.
func (e *RegistryError) Unwrap() []error { return []error{e.Kind, e.Err} }

// refString is a reference as the user writes it.
func refString(ref types.ImageReference) string {
	return transports.ImageName(ref)
}

// parseRef parses TRANSPORT:REFERENCE, saying which transports exist when
// the prefix is unknown.
func parseRef(side, s string) (types.ImageReference, error) {
	name, within, ok := strings.Cut(s, ":")
	if !ok || transports.Get(name) == nil {
		what := fmt.Sprintf("transport %q", name)
		if !ok {
			what = "no transport"
		}
		return nil, fmt.Errorf("%s %q: %w (%s): write TRANSPORT:REFERENCE with one of %s, e.g. docker://registry.example/app:latest",
			side, s, ErrUnknownTransport, what, strings.Join(transports.ListNames(), ", "))
	}
	ref, err := transports.Get(name).ParseReference(within)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", side, s, err)
	}
	return ref, nil
}

// explain turns a failed copy's error into one message naming the
// reference at fault and what to do, keeping the cause wrapped.
func explain(err error, src, dest types.ImageReference) error {
	ref, side := blame(err, src, dest)
	var unauthorized docker.ErrUnauthorizedForCredentials
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var recordHeader tls.RecordHeaderError
	var kind error
	switch {
	case errors.As(err, &unauthorized) || isAuthError(err):
		kind = ErrUnauthorized
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"),
		errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &certInvalid), errors.As(err, &recordHeader):
		kind = ErrTLS
	case errors.As(err, &dnsErr), errors.As(err, &opErr) && opErr.Op == "dial":
		kind = ErrUnreachable
	default:
		return fmt.Errorf("copying %s to %s: %w", refString(src), refString(dest), err)
	}
	return &RegistryError{Side: side, Ref: refString(ref), Registry: registryOf(ref), Kind: kind, Err: err}
}

// isAuthError tells whether a registry answered 401 or "denied"
// (containers/image passes those on as the registry's error codes).
func isAuthError(err error) bool {
	var e errcode.Error
	if errors.As(err, &e) {
		return e.Code == errcode.ErrorCodeUnauthorized || e.Code == errcode.ErrorCodeDenied
	}
	var code errcode.ErrorCode
	if errors.As(err, &code) {
		return code == errcode.ErrorCodeUnauthorized || code == errcode.ErrorCodeDenied
	}
	return false
}

// blame returns the side a registry error belongs to: the only registry
// side, or the one containers/image's message names.
func blame(err error, src, dest types.ImageReference) (types.ImageReference, Side) {
	srcReg := src.Transport().Name() == docker.Transport.Name()
	destReg := dest.Transport().Name() == docker.Transport.Name()
	msg := err.Error()
	fromSource := strings.HasPrefix(msg, "initializing source") || strings.HasPrefix(msg, "reading ")
	if srcReg && (!destReg || fromSource) {
		return src, Source
	}
	return dest, Destination
}

// registryOf names the registry host of a docker: reference.
func registryOf(ref types.ImageReference) string {
	if named := ref.DockerReference(); named != nil {
		return reference.Domain(named)
	}
	return refString(ref)
}
