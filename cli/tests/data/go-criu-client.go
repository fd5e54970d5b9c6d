// go-criu-client: drives a criu-compatible binary through go-criu (Debian's
// golang-github-checkpoint-restore-go-criu-dev), the library runc and podman use, so a
// test sees crust the way they do. Prints one line per result; exits 1 on any error.
//
//	go-criu-client CRIU version            VERSION, runc's minimum (3.0), FEATURE_CHECK
//	go-criu-client CRIU dump PID DIR       DUMP into DIR, notify callbacks recorded
//	go-criu-client CRIU restore DIR        RESTORE from DIR, the restored pid printed
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	criu "github.com/checkpoint-restore/go-criu/v5"
	"github.com/checkpoint-restore/go-criu/v5/rpc"
	"google.golang.org/protobuf/proto"
)

// recorder answers every callback with success and remembers which ones came.
type recorder struct {
	criu.NoNotify
	seen []string
}

func (r *recorder) note(script string) error {
	r.seen = append(r.seen, script)
	return nil
}

func (r *recorder) PreDump() error                  { return r.note("pre-dump") }
func (r *recorder) PostDump() error                 { return r.note("post-dump") }
func (r *recorder) NetworkLock() error              { return r.note("network-lock") }
func (r *recorder) NetworkUnlock() error            { return r.note("network-unlock") }
func (r *recorder) PreRestore() error               { return r.note("pre-restore") }
func (r *recorder) SetupNamespaces(pid int32) error { return r.note(fmt.Sprintf("setup-namespaces:%d", pid)) }
func (r *recorder) PostSetupNamespaces() error      { return r.note("post-setup-namespaces") }
func (r *recorder) PostRestore(pid int32) error     { return r.note(fmt.Sprintf("post-restore:%d", pid)) }
func (r *recorder) PostResume() error               { return r.note("post-resume") }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-criu-client: "+format+"\n", args...)
	os.Exit(1)
}

func openDir(path string) *os.File {
	dir, err := os.Open(path)
	if err != nil {
		fail("open %s: %v", path, err)
	}
	return dir
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: go-criu-client CRIU version|dump PID DIR|restore DIR")
	}
	c := criu.MakeCriu()
	c.SetCriuPath(os.Args[1])
	switch os.Args[2] {
	case "version":
		version, err := c.GetCriuVersion()
		if err != nil {
			fail("version: %v", err)
		}
		fmt.Printf("version %d\n", version)
		atLeast, err := c.IsCriuAtLeast(30000)
		if err != nil || !atLeast {
			fail("runc's minimum 3.0.0: %v %v", atLeast, err)
		}
		if _, err := c.FeatureCheck(&rpc.CriuFeatures{MemTrack: proto.Bool(true)}); err != nil {
			fail("feature check: %v", err)
		}
		fmt.Println("feature check ok")
	case "dump":
		pid, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fail("pid %s: %v", os.Args[3], err)
		}
		dir := openDir(os.Args[4])
		opts := &rpc.CriuOpts{
			ImagesDirFd: proto.Int32(int32(dir.Fd())),
			Pid:         proto.Int32(int32(pid)),
			LogLevel:    proto.Int32(4),
			LogFile:     proto.String("dump.log"),
		}
		r := &recorder{}
		if err := c.Dump(opts, r); err != nil {
			fail("dump: %v", err)
		}
		fmt.Printf("dump notify %s\n", strings.Join(r.seen, ","))
	case "restore":
		dir := openDir(os.Args[3])
		opts := &rpc.CriuOpts{
			ImagesDirFd: proto.Int32(int32(dir.Fd())),
			LogLevel:    proto.Int32(4),
			LogFile:     proto.String("restore.log"),
		}
		r := &recorder{}
		if err := c.Restore(opts, r); err != nil {
			fail("restore: %v", err)
		}
		fmt.Printf("restore notify %s\n", strings.Join(r.seen, ","))
	default:
		fail("unknown mode %s", os.Args[2])
	}
}
