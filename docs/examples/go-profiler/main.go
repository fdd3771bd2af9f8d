// Command go-profiler is a small Go service that profiles itself and sends
// the profiles to a pgo-fleet collector, the way a fleet process would.
//
// The work it does (hashing and counting primes) stands in for your
// service's real work; profiler.go is the part to copy.
//
//	go-profiler [-url URL] [-key-file FILE] [-interval D] [-sample D] [-run-for D]
//
// Flags default to the environment: PGOF_SUBMIT_URL, PGOF_SUBMIT_KEY or
// PGOF_SUBMIT_KEY_FILE, PGOF_INTERVAL, PGOF_SAMPLE. The defaults (a 5-minute
// profile once an hour) are the original project's README example.
//
// Exit status: 0 when it ran and every profile it recorded was accepted,
// 1 when some profile could not be recorded or submitted, 2 for bad usage.
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("go-profiler: ")

	url := flag.String("url", envOr("PGOF_SUBMIT_URL", "http://127.0.0.1:8080/v1/submit"), "collector submit URL")
	keyFile := flag.String("key-file", os.Getenv("PGOF_SUBMIT_KEY_FILE"), "file holding the submit key (else $PGOF_SUBMIT_KEY)")
	interval := flag.Duration("interval", envDuration("PGOF_INTERVAL", time.Hour), "wait between profiles")
	sample := flag.Duration("sample", envDuration("PGOF_SAMPLE", 5*time.Minute), "length of each CPU profile")
	runFor := flag.Duration("run-for", 0, "stop after this long (0: until SIGINT/SIGTERM)")
	workers := flag.Int("workers", 2, "goroutines doing the stand-in work")
	flag.Parse()

	key, err := readKey(*keyFile)
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	if *interval <= 0 || *sample <= 0 {
		log.Print("-interval and -sample must be positive")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}

	var wg sync.WaitGroup
	for i := 0; i < *workers; i++ {
		wg.Add(1)
		go func(seed int) {
			defer wg.Done()
			serve(ctx, seed)
		}(i)
	}

	var submitted, failed atomic.Int64
	p := &Profiler{
		SubmitURL: *url,
		Key:       key,
		Interval:  *interval,
		Sample:    *sample,
		OnError: func(err error) {
			failed.Add(1)
			log.Print(err)
		},
		OnSubmit: func(size int, status string) {
			submitted.Add(1)
			log.Printf("submitted a %d-byte profile: %s", size, status)
		},
	}
	p.Run(ctx)
	wg.Wait()

	log.Printf("%d profiles submitted, %d failed", submitted.Load(), failed.Load())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

// serve is the stand-in for a service's request handling: CPU-bound work
// with a few distinct functions, so the profile has something to show.
func serve(ctx context.Context, seed int) {
	var sink uint64
	for ctx.Err() == nil {
		sink += hashRequest(seed)
		sink += uint64(countPrimes(20000 + seed))
	}
	if sink == 42 {
		fmt.Println() // keeps sink alive
	}
}

// hashRequest hashes a 16 KiB buffer a few times.
func hashRequest(seed int) uint64 {
	buf := make([]byte, 16<<10)
	buf[0] = byte(seed)
	var sum [32]byte
	for i := 0; i < 8; i++ {
		sum = sha256.Sum256(buf)
		buf[1] = sum[0]
	}
	return uint64(sum[0])
}

// countPrimes counts primes below n by trial division.
func countPrimes(n int) int {
	count := 0
	for i := 2; i < n; i++ {
		prime := true
		for d := 2; d*d <= i; d++ {
			if i%d == 0 {
				prime = false
				break
			}
		}
		if prime {
			count++
		}
	}
	return count
}

func readKey(file string) (string, error) {
	if file == "" {
		if key := strings.TrimSpace(os.Getenv("PGOF_SUBMIT_KEY")); key != "" {
			return key, nil
		}
		return "", fmt.Errorf("no submit key: set -key-file, PGOF_SUBMIT_KEY_FILE or PGOF_SUBMIT_KEY")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("submit key: %w", err)
	}
	// The first non-blank line that is not a comment, so a collector's
	// keys file works as it is.
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	return "", fmt.Errorf("submit key: %s holds no key", file)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		log.Printf("%s: %v", name, err)
		os.Exit(2)
	}
	return d
}
