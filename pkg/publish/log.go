package publish

import "github.com/nixoci/nixoci/internal/logs"

// Logger receives what a copy has to say besides its report: retries and
// cleanup problems (Warnf) and details (Debugf). logrus's loggers satisfy
// it; Options.Log defaults to one that discards everything, so the library
// writes nothing unless its caller asks.
type Logger = logs.Logger
