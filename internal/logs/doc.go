// Package logs provides the discarding default logger of nixoci's library
// packages, which stay quiet unless their caller passes a logger.
package logs
