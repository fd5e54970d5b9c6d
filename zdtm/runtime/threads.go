// rt_go: a Go program with goroutines on several OS threads counting through channels
// and a mutex; after the restore they must keep counting and the map built before the
// dump must be intact.
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func digest(data map[string]string) string {
	keys := make([]string, 0, len(data))
	for key := range data {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	hash := sha256.New()
	for _, key := range keys {
		hash.Write([]byte(key + data[key]))
	}
	return hex.EncodeToString(hash.Sum(nil))
}

func main() {
	runtime.GOMAXPROCS(4)
	name := os.Getenv("ZDTM_NAME")
	raw := make([]byte, 8)
	rand.Read(raw)
	token := hex.EncodeToString(raw)
	data := map[string]string{}
	for i := 0; i < 20000; i++ {
		rand.Read(raw)
		data[strconv.Itoa(i)] = hex.EncodeToString(raw)
	}
	sum := digest(data)
	var mu sync.Mutex
	counters := make([]int64, 8)
	work := make(chan int64, 64)
	for i := 0; i < 8; i++ {
		go func(index int) {
			for item := range work {
				mu.Lock()
				counters[index] += item
				mu.Unlock()
			}
		}(i)
	}
	go func() {
		for {
			for i := 0; i < 8; i++ {
				work <- 1
			}
			time.Sleep(time.Millisecond)
		}
	}()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	fd, _ := strconv.Atoi(os.Getenv("ZDTM_READY_FD"))
	syscall.Write(fd, []byte(fmt.Sprintf("%d %s\n", os.Getpid(), token)))
	syscall.Close(fd)
	<-term
	total := func() (all int64) {
		mu.Lock()
		defer mu.Unlock()
		for _, count := range counters {
			all += count
		}
		return
	}
	problem := ""
	before := total()
	time.Sleep(500 * time.Millisecond)
	if digest(data) != sum {
		problem = "map contents changed"
	} else if after := total(); after <= before {
		problem = fmt.Sprintf("goroutines stopped counting (%d -> %d)", before, after)
	}
	verdict := "PASS"
	if problem != "" {
		verdict = "FAIL: " + problem
	}
	os.WriteFile(filepath.Join(os.Getenv("ZDTM_OUTDIR"), name+".out"), []byte(verdict+"\ntoken "+token+"\n"), 0o644)
	if problem != "" {
		os.Exit(1)
	}
}
