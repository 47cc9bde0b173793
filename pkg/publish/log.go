package publish

// Logger receives what a copy has to say besides its report: retries and
// cleanup problems (Warnf) and details (Debugf). logrus's loggers satisfy
// it; Options.Log defaults to one that discards everything, so the library
// writes nothing unless its caller asks.
type Logger interface {
	Debugf(format string, args ...any)
	Warnf(format string, args ...any)
}

// discard is the default Logger.
type discard struct{}

func (discard) Debugf(string, ...any) {}
func (discard) Warnf(string, ...any)  {}
