package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// strategyMiB is the size of the input of BenchmarkCompressionStrategies.
const strategyMiB = 48

// strategy is one way of compressing a layer.
type strategy struct {
	name, algorithm string
	run             func(w io.Writer, data []byte) error
}

// BenchmarkCompressionStrategies compresses one 48 MiB tar-like input (70 %
// text, 30 % random, like the generated closure) with nixoci's compressors
// and with ways of using several cores inside one layer, and says whether
// each gives the same bytes as nixoci's compressor for that algorithm. Only
// one that does could be used without changing the digests of existing
// images. MB/s is of the input; "cores" is CPU time over wall time.
func BenchmarkCompressionStrategies(b *testing.B) {
	data := tarLike(strategyMiB << 20)
	ours := func(alg string) func(io.Writer, []byte) error {
		return func(w io.Writer, data []byte) error {
			c, err := compress.New(alg)
			if err != nil {
				return err
			}
			cw, err := c.NewWriter(w)
			if err != nil {
				return err
			}
			if _, err := cw.Write(data); err != nil {
				return err
			}
			return cw.Close()
		}
	}
	zstdWith := func(opts ...zstd.EOption) func(io.Writer, []byte) error {
		return func(w io.Writer, data []byte) error {
			base := []zstd.EOption{zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(compress.ZstdLevel)), zstd.WithEncoderCRC(true)}
			zw, err := zstd.NewWriter(w, append(base, opts...)...)
			if err != nil {
				return err
			}
			if _, err := zw.Write(data); err != nil {
				return err
			}
			return zw.Close()
		}
	}
	cores := runtime.GOMAXPROCS(0)
	strategies := []strategy{
		{"gzip (nixoci: one stream, level 5)", descriptor.Gzip, ours(descriptor.Gzip)},
		{fmt.Sprintf("gzip in 1 MiB blocks on %d cores (pigz-like)", cores), descriptor.Gzip, parallelGzip(cores)},
		{"zstd (nixoci: level 3, one encoder)", descriptor.Zstd, ours(descriptor.Zstd)},
		{fmt.Sprintf("zstd, %d async encoders", cores), descriptor.Zstd, zstdWith(zstd.WithEncoderConcurrency(cores), zstd.WithConcurrentBlocks(false))},
		{fmt.Sprintf("zstd, %d encoders on concurrent blocks", cores), descriptor.Zstd, zstdWith(zstd.WithEncoderConcurrency(cores), zstd.WithConcurrentBlocks(true))},
	}
	reference := map[string]digest.Digest{}
	var lines []string
	for _, s := range strategies {
		b.Run(s.name, func(b *testing.B) {
			var out bytes.Buffer
			var wall, cpu time.Duration
			for b.Loop() {
				out.Reset()
				start, before := time.Now(), cpuTime()
				if err := s.run(&out, data); err != nil {
					b.Fatal(err)
				}
				wall, cpu = wall+time.Since(start), cpu+cpuTime()-before
			}
			b.SetBytes(int64(len(data)))
			// It must decompress to the input, whatever its bytes.
			zr, err := compress.NewReader(s.algorithm, bytes.NewReader(out.Bytes()))
			if err != nil {
				b.Fatal(err)
			}
			back, err := io.ReadAll(zr)
			zr.Close()
			if err != nil || !bytes.Equal(back, data) {
				b.Fatalf("%s does not decompress to its input (%v)", s.name, err)
			}
			d := digest.FromBytes(out.Bytes())
			if _, ok := reference[s.algorithm]; !ok {
				reference[s.algorithm] = d
			}
			same := d == reference[s.algorithm]
			same01 := 0.0
			if same {
				same01 = 1
			}
			b.ReportMetric(float64(out.Len())/float64(len(data)), "ratio")
			b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
			b.ReportMetric(same01, "same-bytes")
			lines = append(lines, fmt.Sprintf("%-44s %6.0f MB/s  %.2f cores  ratio %.3f  %s",
				s.name, float64(len(data))*float64(b.N)/wall.Seconds()/1e6, cpu.Seconds()/wall.Seconds(),
				float64(out.Len())/float64(len(data)), map[bool]string{true: "same bytes as nixoci's", false: "OTHER BYTES: would change digests"}[same]))
		})
	}
	if len(lines) > 0 {
		fmt.Printf("\ncompression strategies, %d MiB tar-like input, %d cores:\n", strategyMiB, cores)
		for _, l := range lines {
			fmt.Println(l)
		}
	}
}

// parallelGzip compresses data as pigz does: 1 MiB blocks compressed at
// once, each primed with the 32 KiB before it, ended by a sync flush and
// joined into one gzip member. The result is valid gzip, but not the bytes
// of one deflate stream.
func parallelGzip(workers int) func(io.Writer, []byte) error {
	const block, window = 1 << 20, 32 << 10
	return func(w io.Writer, data []byte) error {
		n := (len(data) + block - 1) / block
		parts := make([][]byte, n)
		errs := make([]error, n)
		next := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					var buf bytes.Buffer
					lo, hi := i*block, min(len(data), (i+1)*block)
					fw, err := flate.NewWriterDict(&buf, compress.GzipLevel, data[max(0, lo-window):lo])
					if err == nil {
						_, err = fw.Write(data[lo:hi])
					}
					if err == nil && i < n-1 {
						err = fw.Flush()
					} else if err == nil {
						err = fw.Close()
					}
					parts[i], errs[i] = buf.Bytes(), err
				}
			}()
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		// Header as nixoci writes it: no name, mtime 0, OS unknown.
		header := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}
		if _, err := w.Write(header); err != nil {
			return err
		}
		for i, p := range parts {
			if errs[i] != nil {
				return errs[i]
			}
			if _, err := w.Write(p); err != nil {
				return err
			}
		}
		var trailer [8]byte
		binary.LittleEndian.PutUint32(trailer[:4], crc32.ChecksumIEEE(data))
		binary.LittleEndian.PutUint32(trailer[4:], uint32(len(data)))
		_, err := w.Write(trailer[:])
		return err
	}
}

// tarLike is n bytes cut like the generated closure's files: 70 % text
// from a Zipf vocabulary, 30 % random, in pieces of 0.5–64 KiB.
func tarLike(n int) []byte {
	g := &generator{rng: rand.New(rand.NewPCG(11, 12))}
	g.src = rand.NewChaCha8([32]byte{11})
	corpus := g.text(4 << 20)
	out := make([]byte, 0, n)
	for len(out) < n {
		size := min(n-len(out), int(g.smallSize()))
		if g.rng.Float64() < textFraction {
			off := g.rng.IntN(len(corpus) - size)
			out = append(out, corpus[off:off+size]...)
		} else {
			piece := make([]byte, size)
			_, _ = g.src.Read(piece)
			out = append(out, piece...)
		}
	}
	return out
}

// cpuTime is the user and system time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
