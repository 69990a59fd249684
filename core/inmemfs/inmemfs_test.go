package inmemfs

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var smallFiles = []File{
	{Path: "model.mlpackage/Manifest.json", Size: 2},
	{Path: "metadata.json", Size: 3},
	{Path: "model.mlpackage/Data/x.bin", Size: 4},
}

var smallContent = map[string]string{
	"metadata.json":                 "{ }",
	"model.mlpackage/Data/x.bin":    "\x00\x01\x02\x03",
	"model.mlpackage/Manifest.json": "{}",
}

const smallJSON = `{"nodes":[` +
	`{"children":{},"dataRegion":{"offset":0,"size":3},"kind":0,"name":"metadata.json"},` +
	`{"children":{},"dataRegion":{"offset":3,"size":4},"kind":0,"name":"x.bin"},` +
	`{"children":{"x.bin":1},"dataRegion":{"offset":0,"size":0},"kind":1,"name":"Data"},` +
	`{"children":{},"dataRegion":{"offset":7,"size":2},"kind":0,"name":"Manifest.json"},` +
	`{"children":{"Data":2,"Manifest.json":3},"dataRegion":{"offset":0,"size":0},"kind":1,"name":"model.mlpackage"},` +
	`{"children":{"metadata.json":0,"model.mlpackage":4},"dataRegion":{"offset":0,"size":0},"kind":1,"name":"root"}]}`

func buildBlob(t testing.TB, files []File, content map[string]string) (*Layout, []byte) {
	l, err := Plan("root", files)
	require.NoError(t, err)
	var buf bytes.Buffer
	w := NewWriter(&buf, l)
	for _, e := range l.Files() {
		require.NoError(t, w.WriteFile(e.Path, strings.NewReader(content[e.Path])))
	}
	require.NoError(t, w.Close())
	return l, buf.Bytes()
}

func TestPlanExactJSON(t *testing.T) {
	l, blob := buildBlob(t, smallFiles, smallContent)
	require.Equal(t, smallJSON, string(l.JSON()))
	require.Equal(t, []Entry{
		{Path: "metadata.json", Offset: 0, Size: 3},
		{Path: "model.mlpackage/Data/x.bin", Offset: 3, Size: 4},
		{Path: "model.mlpackage/Manifest.json", Offset: 7, Size: 2},
	}, l.Files())
	require.Equal(t, int64(9+len(smallJSON)), l.Size())
	require.Equal(t, int64(9), l.DataSize())
	require.Len(t, blob, int(l.Size()))
	// Contents back to back, then the JSON reversed: the blob ends with '{'.
	require.Equal(t, "{ }\x00\x01\x02\x03{}", string(blob[:9]))
	trailer := blob[9:]
	require.Equal(t, byte('{'), trailer[len(trailer)-1])
	require.Equal(t, `]}`, string([]byte{trailer[1], trailer[0]}))
	for i := range trailer {
		require.Equal(t, smallJSON[len(smallJSON)-1-i], trailer[i])
	}
	require.Equal(t, l.Trailer(), trailer)

	// Deterministic: input order does not matter.
	rev := []File{smallFiles[2], smallFiles[0], smallFiles[1]}
	_, blob2 := buildBlob(t, rev, smallContent)
	require.Equal(t, blob, blob2)
}

func TestRoundTrip(t *testing.T) {
	_, blob := buildBlob(t, smallFiles, smallContent)
	fs, err := Open(bytes.NewReader(blob), int64(len(blob)))
	require.NoError(t, err)
	require.Equal(t, "root", fs.RootName())
	require.Equal(t, int64(9), fs.MetadataOffset())
	require.Equal(t, []Entry{
		{Path: "metadata.json", Offset: 0, Size: 3},
		{Path: "model.mlpackage/Data/x.bin", Offset: 3, Size: 4},
		{Path: "model.mlpackage/Manifest.json", Offset: 7, Size: 2},
	}, fs.Files())
	for p, want := range smallContent {
		r, err := fs.Open(p)
		require.NoError(t, err)
		got, err := io.ReadAll(r)
		require.NoError(t, err)
		require.Equal(t, want, string(got), p)
	}
	require.True(t, fs.IsDir(""))
	require.True(t, fs.IsDir("model.mlpackage"))
	require.True(t, fs.IsDir("model.mlpackage/Data/"))
	require.False(t, fs.IsDir("metadata.json"))
	require.False(t, fs.IsDir("model.mlmodelc"))
	_, err = fs.Open("model.mlpackage")
	require.Error(t, err)
	_, ok := fs.Stat("metadata.json")
	require.True(t, ok)

	// Trailing NUL and whitespace (the exporter's mmap variant) are skipped.
	padded := append(append([]byte{}, blob...), 0, 0, '\n', 0)
	fs2, err := Open(bytes.NewReader(padded), int64(len(padded)))
	require.NoError(t, err)
	require.Equal(t, fs.Files(), fs2.Files())
}

func TestLargeTrailerCrossesChunks(t *testing.T) {
	// Enough files that the JSON spans several 64 KiB read chunks.
	var files []File
	content := map[string]string{}
	for i := 0; i < 3000; i++ {
		p := "d" + strings.Repeat("x", i%7) + "/f" + string(rune('a'+i%26)) + itoa(i)
		files = append(files, File{Path: p, Size: 1})
		content[p] = "z"
	}
	l, blob := buildBlob(t, files, content)
	require.Greater(t, len(l.JSON()), 128<<10)
	fs, err := Open(bytes.NewReader(blob), int64(len(blob)))
	require.NoError(t, err)
	require.Len(t, fs.Files(), 3000)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

func TestPlanRejects(t *testing.T) {
	cases := map[string][]File{
		"empty file":        {{Path: "a", Size: 0}},
		"duplicate":         {{Path: "a/b", Size: 1}, {Path: "a/b", Size: 2}},
		"file is dir":       {{Path: "a", Size: 1}, {Path: "a/b", Size: 1}},
		"dir is file":       {{Path: "a/b", Size: 1}, {Path: "a", Size: 1}},
		"empty component":   {{Path: "a//b", Size: 1}},
		"leading slash":     {{Path: "/a", Size: 1}},
		"dotdot":            {{Path: "a/../b", Size: 1}},
		"backslash":         {{Path: "a\\", Size: 1}},
		"control character": {{Path: "a\nb", Size: 1}},
		"bad utf8":          {{Path: "a\xff", Size: 1}},
		"no files":          {},
	}
	for name, files := range cases {
		_, err := Plan("root", files)
		require.Error(t, err, name)
	}
	_, err := Plan("", []File{{Path: "a", Size: 1}})
	require.Error(t, err)
}

func TestQuoteInName(t *testing.T) {
	files := []File{{Path: `we"ird{}/x`, Size: 1}}
	_, blob := buildBlob(t, files, map[string]string{`we"ird{}/x`: "1"})
	fs, err := Open(bytes.NewReader(blob), int64(len(blob)))
	require.NoError(t, err)
	require.Equal(t, []Entry{{Path: `we"ird{}/x`, Offset: 0, Size: 1}}, fs.Files())
}

func TestWriterChecks(t *testing.T) {
	l, err := Plan("root", smallFiles)
	require.NoError(t, err)

	w := NewWriter(io.Discard, l)
	require.Error(t, w.WriteFile("model.mlpackage/Manifest.json", strings.NewReader("{}")), "out of order")

	w = NewWriter(io.Discard, l)
	require.Error(t, w.WriteFile("metadata.json", strings.NewReader("{  }")), "too long")

	w = NewWriter(io.Discard, l)
	require.Error(t, w.WriteFile("metadata.json", strings.NewReader("{}")), "too short")

	w = NewWriter(io.Discard, l)
	require.NoError(t, w.WriteFile("metadata.json", strings.NewReader("{ }")))
	require.Error(t, w.Close(), "files missing")

	w = NewWriter(io.Discard, l)
	err = w.StreamFile("metadata.json", func(fw io.Writer) error {
		_, err := fw.Write([]byte("{"))
		return err
	})
	require.ErrorContains(t, err, "missing", "file incomplete when fn returns")
	require.Error(t, w.Close(), "errors are sticky")

	w = NewWriter(io.Discard, l)
	err = w.StreamFile("metadata.json", func(fw io.Writer) error {
		_, err := fw.Write([]byte("{ } "))
		return err
	})
	require.ErrorContains(t, err, "more than")
}

func corrupt(json string, dataLen int) []byte {
	blob := make([]byte, dataLen)
	for i := len(json) - 1; i >= 0; i-- {
		blob = append(blob, json[i])
	}
	return blob
}

func TestOpenRejectsCorrupt(t *testing.T) {
	good := `{"nodes":[{"children":{},"dataRegion":{"offset":0,"size":4},"kind":0,"name":"f"},{"children":{"f":0},"dataRegion":{"offset":0,"size":0},"kind":1,"name":"r"}]}`
	fs, err := Open(bytes.NewReader(corrupt(good, 4)), int64(4+len(good)))
	require.NoError(t, err)
	require.Equal(t, []Entry{{Path: "f", Offset: 0, Size: 4}}, fs.Files())

	bad := map[string][]byte{
		"empty":            {},
		"only zeros":       make([]byte, 100),
		"no brace":         []byte("abc}"),
		"unbalanced":       corrupt(`{"nodes":[`, 0),
		"not json":         corrupt(`{nodes}`, 0),
		"no nodes":         corrupt(`{"nodes":[]}`, 0),
		"region past end":  corrupt(strings.Replace(good, `"size":4`, `"size":400`, 1), 4),
		"offset past end":  corrupt(strings.Replace(good, `"offset":0,"size":4`, `"offset":18446744073709551615,"size":4`, 1), 4),
		"later child":      corrupt(`{"nodes":[{"children":{"f":1},"kind":1,"name":"r"},{"kind":0,"name":"f"}]}`, 0),
		"self child":       corrupt(`{"nodes":[{"children":{"f":0},"kind":1,"name":"f"}]}`, 0),
		"negative child":   corrupt(`{"nodes":[{"kind":0,"name":"f"},{"children":{"f":-1},"kind":1,"name":"r"}]}`, 0),
		"child twice":      corrupt(`{"nodes":[{"kind":0,"name":"f"},{"children":{"f":0},"kind":1,"name":"d"},{"children":{"d":1,"f":0},"kind":1,"name":"r"}]}`, 0),
		"name mismatch":    corrupt(`{"nodes":[{"kind":0,"name":"g"},{"children":{"f":0},"kind":1,"name":"r"}]}`, 0),
		"bad kind":         corrupt(`{"nodes":[{"kind":2,"name":"g"},{"children":{},"kind":1,"name":"r"}]}`, 0),
		"root is file":     corrupt(`{"nodes":[{"kind":0,"name":"g"}]}`, 0),
		"negative size":    corrupt(strings.Replace(good, `"size":4`, `"size":-4`, 1), 4),
		"slash in name":    corrupt(`{"nodes":[{"kind":0,"name":"a/b"},{"children":{"a/b":0},"kind":1,"name":"r"}]}`, 0),
		"brace in string":  corrupt(`{"nodes":[{"kind":0,"name":"}"}]`, 0),
		"trailing garbage": append(corrupt(good, 4), 'x'),
	}
	for name, blob := range bad {
		_, err := Open(bytes.NewReader(blob), int64(len(blob)))
		require.Error(t, err, name)
	}
}

func TestOpenJSONTooLong(t *testing.T) {
	// A '{' at the end followed (backwards) by more than MaxJSON bytes without a
	// closing brace must stop at the limit.
	blob := bytes.Repeat([]byte("a"), MaxJSON+10)
	blob = append(blob, '{')
	_, err := Open(bytes.NewReader(blob), int64(len(blob)))
	require.ErrorContains(t, err, "longer than")
}

func TestDeepTreeRejected(t *testing.T) {
	// 300 nested directories: legal JSON, but deeper than the reader allows.
	var sb strings.Builder
	sb.WriteString(`{"nodes":[{"kind":0,"name":"f"}`)
	prev := "f"
	for i := 1; i <= 300; i++ {
		sb.WriteString(`,{"children":{"` + prev + `":` + itoa(i-1) + `},"kind":1,"name":"d` + itoa(i) + `"}`)
		prev = "d" + itoa(i)
	}
	sb.WriteString("]}")
	blob := corrupt(sb.String(), 0)
	_, err := Open(bytes.NewReader(blob), int64(len(blob)))
	require.Error(t, err)
}

func FuzzOpen(f *testing.F) {
	_, blob := buildBlob(f, smallFiles, smallContent)
	f.Add(blob)
	f.Add(append(append([]byte{}, blob...), 0, 0))
	f.Add([]byte("{"))
	f.Add([]byte(`}"\{`))
	f.Add(corrupt(`{"nodes":[{"kind":0,"name":"f"},{"children":{"f":0},"kind":1,"name":"r"}]}`, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, e := range fs.Files() {
			if e.Offset < 0 || e.Size < 0 || e.Offset+e.Size > int64(len(data)) {
				t.Fatalf("entry %+v outside %d-byte blob", e, len(data))
			}
			r, err := fs.Open(e.Path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				t.Fatal(err)
			}
		}
	})
}
