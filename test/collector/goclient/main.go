// Command goclient does what the original pgo-fleet embedded client does,
// with the standard library only: it records a CPU profile with
// runtime/pprof for a while, then POSTs it to the collector's submit URL
// with a bearer key. The body is an io.Reader of unknown length, so Go's
// HTTP client sends it with Transfer-Encoding: chunked, as the original.
// It exits 0 when the collector answers 200 or 204.
package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"time"
)

func burn(until time.Time) uint64 {
	var n uint64
	data := []byte("pgo-fleet")
	for time.Now().Before(until) {
		sum := sha256.Sum256(data)
		data = sum[:]
		n++
	}
	return n
}

func main() {
	url := flag.String("url", "", "submit URL")
	key := flag.String("key", "", "submit key")
	d := flag.Duration("d", time.Second, "how long to profile")
	flag.Parse()

	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		os.Exit(1)
	}
	burn(time.Now().Add(*d))
	pprof.StopCPUProfile()

	// Hide the length from net/http, as the original's pipe does.
	body := io.MultiReader(&buf)
	req, err := http.NewRequest(http.MethodPost, *url, body)
	if err != nil {
		fmt.Fprintln(os.Stderr, "request:", err)
		os.Exit(1)
	}
	req.Header.Set("Authorization", "Bearer "+*key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "submit:", err)
		os.Exit(1)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		fmt.Fprintf(os.Stderr, "submit: %s: %s\n", resp.Status, msg)
		os.Exit(1)
	}
	fmt.Println(resp.StatusCode, req.ContentLength, req.TransferEncoding)
}
