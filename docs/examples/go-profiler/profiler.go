package main

// profiler.go: a periodic CPU profiler that submits to a pgo-fleet collector.
//
// This file is self-contained (standard library only) so it can be copied
// into any Go program. It does what the original project's embedded client
// (github.com/t2bot/pgo-fleet/embedded, pgo.Enable) does:
//
//   - wait one interval;
//   - record a CPU profile with runtime/pprof for the sample duration;
//   - POST it to the collector's /v1/submit with "Authorization: Bearer KEY",
//     as a body of unknown length, so Go's HTTP client sends it with
//     "Transfer-Encoding: chunked" and no Content-Length;
//   - only then wait again, so one period is interval + sample + upload time.
//
// runtime/pprof allows one CPU profile at a time per process. If something
// else is profiling (a /debug/pprof/profile request, a test with
// -cpuprofile), StartCPUProfile fails; that round is skipped and reported
// through OnError, never retried in a loop.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime/pprof"
	"strings"
	"time"
)

// Profiler records and submits CPU profiles until its context ends.
type Profiler struct {
	SubmitURL string        // e.g. https://pgo.example.net/v1/submit
	Key       string        // a key from the collector's submit keys file
	Interval  time.Duration // time between the end of one upload and the next sample
	Sample    time.Duration // length of each CPU profile
	Client    *http.Client  // nil means a client with a 1-minute timeout

	// OnError, when set, receives every failure (profiling or upload).
	// Errors are otherwise dropped, as in the original client: losing a
	// profile now and then does not matter for PGO.
	OnError func(error)
	// OnSubmit, when set, is told about every profile the collector accepted.
	OnSubmit func(bytes int, status string)
}

// Run blocks until ctx is done. A profile that is being recorded when ctx
// ends is stopped early and still submitted (bounded by the client timeout),
// like pgo.Disable in the original client.
func (p *Profiler) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.Interval):
		}
		profile, err := p.record(ctx)
		if err != nil {
			p.fail(err)
			continue
		}
		// The upload gets its own context: ctx may already be done when the
		// last, shortened profile is submitted.
		if err := p.submit(context.Background(), profile); err != nil {
			p.fail(err)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// record returns one gzip-compressed pprof CPU profile, which is what
// runtime/pprof writes.
func (p *Profiler) record(ctx context.Context) (*bytes.Buffer, error) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	timer := time.NewTimer(p.Sample)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	pprof.StopCPUProfile() // writes the whole profile into buf
	return &buf, nil
}

// submit POSTs one profile. The collector answers 204 once the profile is
// stored; 200 also counts as success, as in the original client.
func (p *Profiler) submit(ctx context.Context, profile *bytes.Buffer) error {
	size := profile.Len()
	// http.NewRequest sets Content-Length for *bytes.Buffer, *bytes.Reader
	// and *strings.Reader bodies. Hiding the buffer behind a plain io.Reader
	// makes the length unknown, so the body goes out chunked: the same wire
	// format the original embedded client produces.
	body := struct{ io.Reader }{profile}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.SubmitURL, body)
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+p.Key)
	req.Header.Set("Content-Type", "application/octet-stream")
	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: time.Minute}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	defer resp.Body.Close()
	// The collector's error bodies are one short line saying why.
	reason, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("submit: %s: %s", resp.Status, strings.TrimSpace(string(reason)))
	}
	if p.OnSubmit != nil {
		p.OnSubmit(size, resp.Status)
	}
	return nil
}

func (p *Profiler) fail(err error) {
	if p.OnError != nil {
		p.OnError(err)
	}
}
