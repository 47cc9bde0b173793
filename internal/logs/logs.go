package logs

import (
	"io"

	"github.com/sirupsen/logrus"
)

// Discard returns a logger that writes nothing.
func Discard() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.PanicLevel)
	return l
}

// Or returns l, or Discard() when l is nil: the default of a library's
// Log option.
func Or(l logrus.FieldLogger) logrus.FieldLogger {
	if l == nil {
		return Discard()
	}
	return l
}

// Logger is the part of a logger that pkg/publish and pkg/dockerload call:
// warnings and details. logrus's loggers satisfy it, and so does Discard().
type Logger interface {
	Debugf(format string, args ...any)
	Warnf(format string, args ...any)
}
