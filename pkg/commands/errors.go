package commands

import (
	"fmt"
	"strings"
	"unicode"
)

// maxWord is the longest run of non-space characters an error message
// shows whole; longer ones (a path of thousands of characters, say) are
// shortened to their start and end.
const maxWord = 240

// maxMessage bounds the whole message; what is cut is counted.
const maxMessage = 4000

// FormatError returns err's message as the CLI prints it: every overlong
// word (a path, a URL) shortened to its start and end with its length, and
// the message bounded, so that a bad argument never floods the terminal.
func FormatError(err error) string {
	msg := err.Error()
	var b strings.Builder
	word := func(w string) {
		r := []rune(w)
		if len(r) <= maxWord {
			b.WriteString(w)
			return
		}
		// Punctuation that ends the word belongs to the sentence.
		end := len(r)
		for end > 0 && strings.ContainsRune(":,;.)\"'", r[end-1]) {
			end--
		}
		fmt.Fprintf(&b, "%s…%s (%d characters)%s", string(r[:maxWord/2]), string(r[end-maxWord/4:end]), end, string(r[end:]))
	}
	start := -1
	for i, c := range msg {
		if unicode.IsSpace(c) {
			if start >= 0 {
				word(msg[start:i])
				start = -1
			}
			b.WriteRune(c)
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		word(msg[start:])
	}
	out := b.String()
	if r := []rune(out); len(r) > maxMessage {
		out = fmt.Sprintf("%s… (%d more characters)", string(r[:maxMessage]), len(r)-maxMessage)
	}
	return out
}
