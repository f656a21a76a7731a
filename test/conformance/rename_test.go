package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/continuity/fs/fstest"
)

// TestRename is the suite's Rename check (docker/docker#25409), which the
// suite skips for every snapshotter because of old kernels' overlayfs:
// renames of a lower directory and over lower files, committed, then
// compared with the same changes applied to a plain directory.
func TestRename(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "testsuite")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	work := filepath.Join(dir, "work")
	flat := filepath.Join(dir, "flat")
	for _, d := range []string{root, work, flat} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	sn, stop, err := newSnapshotter(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()

	layers := []fstest.Applier{
		fstest.Apply(
			fstest.CreateDir("/dir1", 0o700),
			fstest.CreateDir("/somefiles", 0o700),
			fstest.CreateFile("/somefiles/f1", []byte("was here first!"), 0o644),
			fstest.CreateFile("/somefiles/f2", []byte("nothing interesting"), 0o644),
		),
		fstest.Apply(
			fstest.Rename("/dir1", "/dir2"),
			fstest.CreateFile("/somefiles/f1-overwrite", []byte("new content 1"), 0o644),
			fstest.Rename("/somefiles/f1-overwrite", "/somefiles/f1"),
			fstest.Rename("/somefiles/f2", "/somefiles/f3"),
		),
	}
	parent := ""
	for i, layer := range layers {
		key := fmt.Sprintf("layer-%d-active", i)
		mounts, err := sn.Prepare(ctx, key, parent)
		if err != nil {
			t.Fatal(err)
		}
		if err := applyMounted(mounts, filepath.Join(work, key), layer.Apply); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		parent = fmt.Sprintf("layer-%d", i)
		if err := sn.Commit(ctx, parent, key); err != nil {
			t.Fatal(err)
		}
		if err := layer.Apply(flat); err != nil {
			t.Fatal(err)
		}
		view := parent + "-view"
		mounts, err = sn.View(ctx, view, parent)
		if err != nil {
			t.Fatal(err)
		}
		if err := applyMounted(mounts, filepath.Join(work, view), func(mnt string) error { return fstest.CheckDirectoryEqual(flat, mnt) }); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if err := sn.Remove(ctx, view); err != nil {
			t.Fatal(err)
		}
	}
}

// applyMounted mounts `mounts` on a fresh directory, runs fn on it, and unmounts.
func applyMounted(mounts []mount.Mount, target string, fn func(string) error) (err error) {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := mount.All(mounts, target); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	defer func() {
		if uerr := mount.UnmountAll(target, 0); uerr != nil && err == nil {
			err = fmt.Errorf("unmount: %w", uerr)
		}
	}()
	return fn(target)
}

