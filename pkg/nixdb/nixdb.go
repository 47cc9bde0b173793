package nixdb

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	_ "github.com/mattn/go-sqlite3" // the sqlite driver, to normalise Nix's database
	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/logs"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// registrationTime is the registration time written for every path, so
// that the same paths always give the same database.
const registrationTime = 1

// Options say what to register and where.
type Options struct {
	// NixStore is the nix-store program that writes the database.
	NixStore string
	// Graph holds the path infos (narHash, narSize, references) of Paths.
	Graph *closure.Graph
	// Paths are the store paths to register: those the image holds under
	// /nix/store.
	Paths []string
	// Scratch is a directory for the temporary store nix-store writes.
	Scratch string
	// Out receives nix/var/nix/db, nix/store and a GC root in
	// nix/var/nix/gcroots/docker for each path nothing else refers to.
	Out string
	// Log receives a warning for each reference to a path outside Paths
	// (not registered). Default: discarded.
	Log logrus.FieldLogger
}

// Write writes a Nix database registering exactly opts.Paths to opts.Out.
//
// The database is made by nix-store (--load-db into a store rooted in the
// scratch directory), so it has the schema that Nix expects; registration
// times are then set to a constant and the file vacuumed, so that a rebuild
// writes the same bytes with the same tools.
func Write(ctx context.Context, opts Options) error {
	if opts.NixStore == "" {
		return fmt.Errorf("writing a nix database: no nix-store program given")
	}
	infos, err := registrations(opts.Graph, opts.Paths, logs.Or(opts.Log))
	if err != nil {
		return err
	}
	return writeNixDB(ctx, opts.NixStore, filepath.Join(opts.Scratch, "nix-db-root"), opts.Out, infos)
}

// registrations returns the graph nodes of paths, sorted, with references
// to paths outside the set dropped (with a warning): Nix refuses to
// register a path whose references are not valid.
func registrations(g *closure.Graph, paths []string, log logrus.FieldLogger) ([]closure.Node, error) {
	in := make(map[string]bool, len(paths))
	for _, p := range paths {
		in[p] = true
	}
	out := make([]closure.Node, 0, len(paths))
	for _, p := range paths {
		n, ok := g.Nodes[p]
		if !ok {
			return nil, fmt.Errorf("nix database: store path %s is in the image but not in the reference graph, so its hash is unknown", p)
		}
		if n.NarHash == "" {
			return nil, fmt.Errorf("nix database: store path %s has no narHash in the reference graph", p)
		}
		reg := closure.Node{Path: p, NarHash: n.NarHash, NarSize: n.NarSize}
		for _, r := range n.References {
			if in[r] {
				reg.References = append(reg.References, r)
			} else {
				log.Warnf("nix database: %s refers to %s, which is not in the image (ignored or excluded): the reference is not registered", p, r)
			}
		}
		out = append(out, reg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// gcRoots returns the paths of infos that no other path of infos refers to:
// rooting them keeps every registered path alive.
func gcRoots(infos []closure.Node) []string {
	referenced := map[string]bool{}
	for _, n := range infos {
		for _, r := range n.References {
			referenced[r] = true
		}
	}
	var roots []string
	for _, n := range infos {
		if !referenced[n.Path] {
			roots = append(roots, n.Path)
		}
	}
	return roots
}

// loadDBInput is what `nix-store --load-db` reads (the format of
// `nix-store --dump-db`): per path, its path, hash, NAR size, deriver (empty),
// number of references and the references, one per line.
func loadDBInput(infos []closure.Node) []byte {
	var b bytes.Buffer
	for _, n := range infos {
		fmt.Fprintf(&b, "%s\n%s\n%d\n\n%d\n", n.Path, n.NarHash, n.NarSize, len(n.References))
		for _, r := range n.References {
			b.WriteString(r + "\n")
		}
	}
	return b.Bytes()
}

// writeNixDB registers infos with nixStore in a store rooted at root, then
// writes the database and one GC root per top path to out/nix/var/nix.
func writeNixDB(ctx context.Context, nixStore, root, out string, infos []closure.Node) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("creating nix database root %s: %w", root, err)
	}
	cmd := exec.CommandContext(ctx, nixStore, "--store", "local?root="+root, "--load-db")
	cmd.Stdin = bytes.NewReader(loadDBInput(infos))
	// A build user group is what a multi-user install configures; it has no
	// meaning for a store in the build directory, and its group may not exist.
	cmd.Env = append(os.Environ(), "NIX_CONFIG=build-users-group =")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("registering %d store paths with %s --load-db: %w: %s", len(infos), nixStore, err, strings.TrimSpace(stderr.String()))
	}
	srcDB := filepath.Join(root, "nix", "var", "nix", "db")
	if err := normaliseDB(ctx, filepath.Join(srcDB, "db.sqlite")); err != nil {
		return err
	}
	dstDB := filepath.Join(out, "nix", "var", "nix", "db")
	for _, d := range []string{dstDB, filepath.Join(out, "nix", "store"), filepath.Join(out, "nix", "var", "nix", "profiles"), filepath.Join(out, "nix", "var", "nix", "gcroots", "docker")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("writing nix database: %w", err)
		}
	}
	for _, f := range []string{"db.sqlite", "schema"} {
		if err := copyFile(filepath.Join(srcDB, f), filepath.Join(dstDB, f)); err != nil {
			return err
		}
	}
	for _, r := range gcRoots(infos) {
		link := filepath.Join(out, "nix", "var", "nix", "gcroots", "docker", filepath.Base(r))
		if err := os.Symlink(r, link); err != nil {
			return fmt.Errorf("writing nix gc root %s: %w", link, err)
		}
	}
	return nil
}

// normaliseDB sets every registration time to registrationTime, leaves WAL
// mode and rewrites the file compactly, so that the bytes depend only on
// what is registered.
func normaliseDB(ctx context.Context, file string) error {
	db, err := sql.Open("sqlite3", file)
	if err != nil {
		return fmt.Errorf("opening nix database %s: %w", file, err)
	}
	defer db.Close()
	for _, stmt := range []string{
		fmt.Sprintf("UPDATE ValidPaths SET registrationTime = %d", registrationTime),
		"PRAGMA journal_mode = DELETE",
		"VACUUM",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("normalising nix database %s: %s: %w", file, stmt, err)
		}
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("closing nix database %s: %w", file, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return nil
}

// LayerPath is the store path out (what Write wrote) as layer content
// relocated to "/", owned by uid:gid, with directories 0755 and database
// files 0644 so that its owner can use it.
func LayerPath(out string, uid, gid int) descriptor.Path {
	dbOut := out
	q := regexp.QuoteMeta(dbOut)
	u, g := uid, gid
	return descriptor.Path{
		Path:    dbOut,
		Rewrite: &descriptor.Rewrite{Regex: "^" + q, Repl: ""},
		Perms: []descriptor.Perm{
			{Regex: "^" + q + "/nix(/.*)?$", UID: &u, GID: &g},
			{Regex: "^" + q + "/nix(/store|/var(/nix(/db|/gcroots(/docker)?|/profiles)?)?)?$", Mode: "0755"},
			{Regex: "^" + q + "/nix/var/nix/db/[^/]+$", Mode: "0644"},
		},
	}
}
