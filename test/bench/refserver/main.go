// Command refserver is the benchmark's peer: a Go collector that does, per
// request, what the Go collector pgo-fleet replaces does (same endpoints, same
// environment variables, same file names):
//
//	POST /v1/submit  profile.Parse of the body (google/pprof), the CPU-profile
//	                 check (period cpu/nanoseconds, sample types samples/count
//	                 and cpu/nanoseconds), profile.Write into a buffer, one
//	                 os.WriteFile of "<unix ms>_<n>.pgo" (no fsync), 204.
//	POST /v1/merge   under one mutex: read the directory, profile.Parse every
//	                 file, profile.Merge, profile.Write, 200 with the result
//	                 (and_combine=true also writes merged_*.pgo and removes
//	                 the inputs).
//	GET  /healthz    200 OK.
//
// It is ours, written for test/bench only, with Debian's Go and Debian's
// golang-github-google-pprof-dev in GOPATH mode (no network):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o build/bench/refserver ./test/bench/refserver
package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/pprof/profile"
)

var (
	dir        string
	submitKeys []string
	mergeKeys  []string
	counter    int64
	mergeMu    sync.Mutex
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func keys(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func authorized(r *http.Request, ks []string) bool {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return false
	}
	for _, k := range ks {
		if h[7:] == k {
			return true
		}
	}
	return false
}

func isCPU(p *profile.Profile) bool {
	if p.PeriodType == nil || p.PeriodType.Type != "cpu" || p.PeriodType.Unit != "nanoseconds" {
		return false
	}
	if len(p.SampleType) != 2 {
		return false
	}
	samples, cpu := false, false
	for _, s := range p.SampleType {
		switch {
		case s.Type == "samples" && s.Unit == "count" && !samples:
			samples = true
		case s.Type == "cpu" && s.Unit == "nanoseconds" && !cpu:
			cpu = true
		default:
			return false
		}
	}
	return samples && cpu
}

func submit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if !authorized(r, submitKeys) {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	defer func() {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}()
	p, err := profile.Parse(r.Body)
	if err != nil || !isCPU(p) {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	name := fmt.Sprintf("%d_%d.pgo", time.Now().UnixMilli(), atomic.AddInt64(&counter, 1))
	if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o664); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func merge(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if !authorized(r, mergeKeys) {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	combine := r.URL.Query().Get("and_combine") == "true"
	mergeMu.Lock()
	defer mergeMu.Unlock()
	entries, err := os.ReadDir(dir)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var profs []*profile.Profile
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.Open(path)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		p, err := profile.Parse(f)
		f.Close()
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		profs = append(profs, p)
		names = append(names, path)
	}
	if len(profs) == 0 {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	merged, err := profile.Merge(profs)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := merged.Write(&buf); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if combine {
		name := fmt.Sprintf("merged_%d_%d.pgo", time.Now().UnixMilli(), atomic.AddInt64(&counter, 1))
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o664); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		for _, n := range names {
			os.Remove(n)
		}
	}
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

func main() {
	dir = env("PGOF_DIRECTORY", "./profiles")
	submitKeys = keys(env("PGOF_SUBMIT_AUTH_KEYS_FILE", "/secret/submit_keys"))
	mergeKeys = keys(env("PGOF_MERGE_AUTH_KEYS_FILE", "/secret/merge_keys"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("OK"))
	})
	http.HandleFunc("/v1/submit", submit)
	http.HandleFunc("/v1/merge", merge)
	log.Fatal(http.ListenAndServe(env("PGOF_BIND_ADDRESS", "127.0.0.1:8080"), nil))
}
