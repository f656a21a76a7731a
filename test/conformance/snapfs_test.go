// containerd's own snapshotter test suite, run against `snapfs serve`
// through containerd's proxy client; mounts are made by containerd's mount
// package (fuse.snapfs through mount(8) and mount.fuse).
//
// SNAPFS names the snapfs command line (default: "snapfs").
package conformance

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

func TestSnapfs(t *testing.T) {
	testsuite.SnapshotterSuite(t, "snapfs", newSnapshotter)
}

// newSnapshotter starts a server for root (an empty directory the suite
// made) and connects to it; the cleanup stops the server.
func newSnapshotter(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	command := strings.Fields(os.Getenv("SNAPFS"))
	if len(command) == 0 {
		command = []string{"snapfs"}
	}
	address := filepath.Join(filepath.Dir(root), "snapfs.sock")
	args := append(command[1:], "--root", root, "serve", "--address", address)
	server := exec.Command(command[0], args...)
	log, err := os.Create(filepath.Join(filepath.Dir(root), "serve.log"))
	if err != nil {
		return nil, nil, err
	}
	server.Stdout, server.Stderr = log, log
	if err := server.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- server.Wait() }()
	stop := func() error {
		_ = server.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = server.Process.Kill()
			return fmt.Errorf("snapfs serve did not stop on SIGTERM")
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", address); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = stop()
			out, _ := os.ReadFile(log.Name())
			return nil, nil, fmt.Errorf("snapfs serve did not listen on %s: %s", address, out)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Dialled as containerd dials its proxy plugins.
	conn, err := grpc.Dial(dialer.DialAddress(address), grpc.WithInsecure(), grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		_ = stop()
		return nil, nil, err
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "snapfs")
	return sn, func() error {
		sn.Close()
		conn.Close()
		return stop()
	}, nil
}
