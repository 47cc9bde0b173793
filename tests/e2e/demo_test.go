package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// demoSummaryRE matches a summary line of scripts/demo.sh that counts layers.
var demoSummaryRE = regexp.MustCompile(`(?m)^(.*?)\s+[0-9.]+ s\s+layers: (\d+) sent, (\d+) skipped$`)

// TestDemo runs scripts/demo.sh, the README's first command after setup,
// twice in one work directory: the image runs, and the dev cycle sends
// only the changed layer to the registry and to Docker, also on the rerun.
func TestDemo(t *testing.T) {
	testenv.RequireNix(t)
	testenv.RequireDocker(t)
	testenv.RequireTools(t, "go", "curl", "bash")
	ctx := testContext(t, 10*time.Minute)
	reg := registry(t, ctx)
	dir := t.TempDir()
	nix := testenv.NewNix(t, dir)
	env := append(nix.Env(), "NIXOCI_DEMO_DIR="+filepath.Join(dir, "demo"), "NIXOCI_DEMO_REGISTRY="+reg)
	script := filepath.Join(testenv.ModuleRoot(), "scripts", "demo.sh")
	// The demo numbers its edits from the work directory's counter; a new
	// start makes this run's application layers new to the registry and
	// to Docker, whatever earlier runs left there.
	testenv.WriteFile(t, filepath.Join(dir, "demo", "edit"), fmt.Sprint(time.Now().UnixNano()%1_000_000_000), 0o644)
	for run := 1; run <= 2; run++ {
		r := testenv.Cmd{Name: "bash", Args: []string{script}, Env: env, Timeout: 8 * time.Minute}.Must(t, ctx)
		out := r.Stdout
		if !strings.Contains(out, "demo.sh: done") {
			t.Fatalf("run %d: demo.sh did not finish:\n%s", run, testenv.Tail(out, 3000))
		}
		lines := demoSummaryRE.FindAllStringSubmatch(out, -1)
		if len(lines) != 4 {
			t.Fatalf("run %d: %d summary lines with layer counts, want 4 (push, load, repush, reload):\n%s", run, len(lines), testenv.Tail(out, 3000))
		}
		// The dev cycle sends only the application's layer. The first
		// image of a run sends at least that layer (busybox and the
		// library may be there from earlier runs); on the rerun it is the
		// last image of the first run, so nothing.
		want := []string{"≥1", "≥1", "1", "1"}
		if run == 2 {
			want[0], want[1] = "0", "0"
		}
		for i, l := range lines {
			sent, skipped := l[2], l[3]
			ok := sent == want[i]
			if want[i] == "≥1" {
				ok = sent != "0"
			}
			if n1, n2 := atoi(sent), atoi(skipped); !ok || n1+n2 != 3 {
				t.Errorf("run %d, %q: %s sent, %s skipped; want %s of the 3 layers sent, the others skipped", run, strings.TrimSpace(l[1]), sent, skipped, want[i])
			}
		}
		if n := strings.Count(out, "│ hello from nixoci, edit "); n != 2 {
			t.Errorf("run %d: the containers printed the message %d times, want 2:\n%s", run, n, testenv.Tail(out, 3000))
		}
		// The dev cycle's rebuild compressed one new layer: one new entry.
		m := regexp.MustCompile(`digest cache: (\d+) entries before, (\d+) after`).FindAllStringSubmatch(out, -1)
		if len(m) != 2 || atoi(m[1][2]) != atoi(m[1][1])+1 {
			t.Errorf("run %d: digest cache lines %q, want the rebuild to add one entry", run, m)
		}
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
