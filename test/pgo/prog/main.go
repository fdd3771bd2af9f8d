// Command pgoprog is the program the PGO equivalence test
// (test/pgo/test_pgo_compiler.py) builds with Go 1.21+'s -pgo: once with a
// full merged profile and once with the shape=pgo one. It has what PGO acts
// on: hot call sites to functions too big to inline without a profile, an
// interface call with one dominant implementation (devirtualisation), and
// cold code next to it. Run with -cpuprofile FILE it profiles itself, so the
// test's profiles carry real call edges. Standard library only.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"strings"
	"time"
)

// Shape is called through an interface in a hot loop; Rect dominates.
type Shape interface {
	Area() float64
	Name() string
}

type Rect struct{ W, H float64 }

func (r *Rect) Area() float64 {
	a := 0.0
	for i := 0; i < 8; i++ {
		a += r.W * (r.H + float64(i))
	}
	return a
}
func (r *Rect) Name() string { return "rect" }

type Circle struct{ R float64 }

func (c *Circle) Area() float64 {
	a := 0.0
	for i := 0; i < 8; i++ {
		a += 3.14159 * c.R * (c.R + float64(i))
	}
	return a
}
func (c *Circle) Name() string { return "circle" }

var sink float64
var sinkInt int

// checksum is too large for the default inlining budget (80) but well
// under PGO's budget for hot call sites (2000).
func checksum(data []byte, seed uint32) uint32 {
	h := seed ^ 0x811c9dc5
	for i, b := range data {
		h ^= uint32(b)
		h *= 0x01000193
		if i%7 == 3 {
			h = (h << 5) | (h >> 27)
		}
		if h&0xff == 0x5a {
			h += uint32(i)
		}
	}
	switch {
	case h%3 == 0:
		h ^= 0xdeadbeef
	case h%3 == 1:
		h += 0x12345
	default:
		h -= 0x777
	}
	return h
}

// scale is another non-trivial function called from a hot loop.
func scale(xs []float64, f float64) float64 {
	total := 0.0
	for i := range xs {
		xs[i] = xs[i]*f + 1
		if xs[i] > 1e6 {
			xs[i] = 0
		}
		total += xs[i]
	}
	if total < 0 {
		total = -total
	}
	return total
}

func areas(shapes []Shape) float64 {
	total := 0.0
	for _, s := range shapes {
		total += s.Area() // hot interface call, mostly Rect
	}
	return total
}

// coldPath runs rarely; PGO should leave it alone.
func coldPath(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%d,", i)
	}
	return b.String()
}

func work(d time.Duration) {
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(i * 7)
	}
	xs := make([]float64, 512)
	shapes := make([]Shape, 0, 256)
	for i := 0; i < 256; i++ {
		if i%16 == 0 {
			shapes = append(shapes, &Circle{R: float64(i)})
		} else {
			shapes = append(shapes, &Rect{W: float64(i), H: 2})
		}
	}
	deadline := time.Now().Add(d)
	for round := 0; time.Now().Before(deadline); round++ {
		for k := 0; k < 50; k++ {
			sinkInt += int(checksum(data, uint32(round+k)))
			sink += scale(xs, 1.0001)
			sink += areas(shapes)
			sink += areas(shapes)
		}
		if round%1000 == 999 {
			sinkInt += len(coldPath(3))
		}
	}
}

func main() {
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	seconds := flag.Float64("seconds", 2, "how long to run")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	work(time.Duration(*seconds * float64(time.Second)))
	fmt.Println(sinkInt%10, sink > 0)
}
