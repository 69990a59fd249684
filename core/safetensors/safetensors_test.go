package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"lorapte/core/quant"
)

// rawFile assembles a safetensors file from a literal header and data.
func rawFile(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func openBytes(name string, b []byte) (*File, error) {
	return Open(name, bytes.NewReader(b), int64(len(b)))
}

func f32Bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func u16Bytes(v ...uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

func writeBytes(t *testing.T, ts []Tensor, meta map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, ts, meta))
	return buf.Bytes()
}

func TestWriteExactBytes(t *testing.T) {
	b := writeBytes(t, []Tensor{
		{Name: "b", DType: I8, Shape: []int64{2}, Data: []byte{1, 2}},
		{Name: "a", DType: F16, Shape: []int64{1, 1}, Data: []byte{0, 0x3c}},
	}, map[string]string{"format": "pt"})
	header := `{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[1,1],"data_offsets":[0,2]},"b":{"dtype":"I8","shape":[2],"data_offsets":[2,4]}}`
	for len(header)%8 != 0 {
		header += " "
	}
	require.Equal(t, rawFile(header, []byte{0, 0x3c, 1, 2}), b)
	// Same input in another order gives the same bytes.
	b2 := writeBytes(t, []Tensor{
		{Name: "a", DType: F16, Shape: []int64{1, 1}, Data: []byte{0, 0x3c}},
		{Name: "b", DType: I8, Shape: []int64{2}, Data: []byte{1, 2}},
	}, map[string]string{"format": "pt"})
	require.Equal(t, b, b2)
}

func TestWriteErrors(t *testing.T) {
	var buf bytes.Buffer
	require.ErrorContains(t, Write(&buf, []Tensor{{Name: "x", DType: F32, Shape: []int64{2}, Data: make([]byte, 4)}}, nil), `"x"`)
	require.ErrorContains(t, Write(&buf, []Tensor{{Name: "x", DType: "Q4", Shape: nil, Data: nil}}, nil), "dtype")
	require.ErrorContains(t, Write(&buf, []Tensor{{Name: "x", DType: U8, Data: []byte{1}}, {Name: "x", DType: U8, Data: []byte{1}}}, nil), "duplicate")
	require.ErrorContains(t, Write(&buf, []Tensor{{Name: "__metadata__", DType: U8, Data: []byte{1}}}, nil), "invalid")
	require.ErrorContains(t, Write(&buf, []Tensor{{Name: "x", DType: U8, Shape: []int64{-1}}}, nil), "negative")
}

func TestOpenRoundTrip(t *testing.T) {
	b := writeBytes(t, []Tensor{
		{Name: "w", DType: F32, Shape: []int64{2, 3}, Data: f32Bytes(1, 2, 3, 4, 5, 6)},
		{Name: "h", DType: F16, Shape: []int64{3}, Data: u16Bytes(0x3c00, 0xc000, 0x3800)},
		{Name: "empty", DType: F32, Shape: []int64{0, 4}, Data: nil},
		{Name: "scalar", DType: I64, Shape: []int64{}, Data: make([]byte, 8)},
	}, map[string]string{"k": "v"})
	f, err := openBytes("m.safetensors", b)
	require.NoError(t, err)
	require.Equal(t, []string{"empty", "h", "scalar", "w"}, f.Names())
	require.Equal(t, map[string]string{"k": "v"}, f.Metadata())
	info, ok := f.Info("w")
	require.True(t, ok)
	hlen := int64(binary.LittleEndian.Uint64(b))
	require.Equal(t, Info{Name: "w", File: "m.safetensors", DType: F32, Shape: []int64{2, 3}, Offset: 8 + hlen + 6 + 8, Bytes: 24}, info)
	require.Equal(t, int64(6), info.Numel())
	si, _ := f.Info("scalar")
	require.Equal(t, int64(1), si.Numel())
	_, ok = f.Info("nope")
	require.False(t, ok)

	r, err := f.Raw("w")
	require.NoError(t, err)
	got := make([]byte, 24)
	_, err = r.ReadAt(got, 0)
	require.NoError(t, err)
	require.Equal(t, f32Bytes(1, 2, 3, 4, 5, 6), got)
	_, err = f.Raw("nope")
	require.ErrorContains(t, err, `"nope"`)

	dst := make([]float32, 3)
	require.NoError(t, f.ReadFloat32("w", 1, 1, dst))
	require.Equal(t, []float32{4, 5, 6}, dst)
	require.NoError(t, f.ReadFloat32("h", 0, 1, dst))
	require.Equal(t, []float32{1, -2, 0.5}, dst)
	require.NoError(t, f.ReadFloat32("empty", 0, 0, dst))
}

func TestReadFloat32Types(t *testing.T) {
	vals := []float32{0.5, -1.25, 3, 0.0078125, -0.75, 2}
	h := make([]uint16, 6)
	bf := make([]uint16, 6)
	quant.F32ToF16Slice(h, vals)
	quant.F32ToBF16Slice(bf, vals)
	b := writeBytes(t, []Tensor{
		{Name: "f32", DType: F32, Shape: []int64{3, 2}, Data: f32Bytes(vals...)},
		{Name: "f16", DType: F16, Shape: []int64{3, 2}, Data: u16Bytes(h...)},
		{Name: "bf16", DType: BF16, Shape: []int64{3, 1, 2}, Data: u16Bytes(bf...)},
		{Name: "i32", DType: I32, Shape: []int64{1}, Data: make([]byte, 4)},
	}, nil)
	src, err := OpenFiles(mustOpen(t, "x", b))
	require.NoError(t, err)
	for _, n := range []string{"f32", "f16", "bf16"} {
		dst := make([]float32, 4)
		require.NoError(t, src.ReadFloat32(n, 1, 2, dst), n)
		require.Equal(t, vals[2:], dst, n)
		all := make([]float32, 6)
		require.NoError(t, src.ReadFloat32(n, 0, 3, all), n)
		require.Equal(t, vals, all, n)
	}
	dst := make([]float32, 6)
	require.ErrorContains(t, src.ReadFloat32("f32", 2, 2, dst), "outside")
	require.ErrorContains(t, src.ReadFloat32("f32", -1, 1, dst), "outside")
	require.ErrorContains(t, src.ReadFloat32("f32", 0, 3, dst[:5]), "destination")
	require.ErrorContains(t, src.ReadFloat32("i32", 0, 1, dst), "I32")
	require.ErrorContains(t, src.ReadFloat32("nope", 0, 1, dst), `"nope"`)
}

func mustOpen(t *testing.T, name string, b []byte) *File {
	t.Helper()
	f, err := openBytes(name, b)
	require.NoError(t, err)
	return f
}

func TestOpenRejects(t *testing.T) {
	ok4 := make([]byte, 8)
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"tiny", []byte{1, 2, 3}, "too small"},
		{"header past EOF", func() []byte { b := rawFile(`{}`, nil); binary.LittleEndian.PutUint64(b, 100); return b }(), "past the end"},
		{"absurd header", func() []byte { b := rawFile(`{}`, nil); binary.LittleEndian.PutUint64(b, 1<<62); return b }(), "limit"},
		{"truncated", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, ok4[:5]), "past the end"},
		{"not json", rawFile(`{"a":`, nil), "header"},
		{"not object", rawFile(`[1,2]`, nil), "object"},
		{"duplicate", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, ok4), `duplicate key "a"`},
		{"trailing", rawFile(`{} x`, nil), "after"},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, ok4), `tensor "a"`},
		{"dtype mismatch", rawFile(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, ok4), "needs 4"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}`, ok4), "header"},
		{"begin after end", rawFile(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}}`, ok4), "begin after end"},
		{"past end", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}}`, ok4), "past the end of the 8 byte data"},
		{"overlap", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, ok4), `"b" overlaps tensor "a"`},
		{"overflow", rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, ok4), "overflows"},
		{"huge dim", rawFile(`{"a":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,8]}}`, ok4), "too large"},
		{"negative dim", rawFile(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,8]}}`, ok4), "shape"},
		{"meta not string", rawFile(`{"__metadata__":{"a":1}}`, nil), "__metadata__"},
		{"extra key", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, ok4), "keys"},
		{"empty name", rawFile(`{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, ok4), "empty tensor name"},
	}
	for _, c := range cases {
		_, err := openBytes("bad.safetensors", c.file)
		require.Error(t, err, c.name)
		require.Contains(t, err.Error(), "bad.safetensors", c.name)
		require.Contains(t, err.Error(), c.want, c.name)
	}
	// Data out of name order and with a gap is fine; zero-size tensors may sit anywhere.
	f, err := openBytes("ok", rawFile(`{"z":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},"e":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}`, ok4))
	require.NoError(t, err)
	require.Equal(t, []string{"a", "e", "z"}, f.Names())
}

func TestOpenRealModel(t *testing.T) {
	p := filepath.Join("..", "..", "testdata", "tiny-llama", "model", "model.safetensors")
	fh, err := os.Open(p)
	require.NoError(t, err)
	defer fh.Close()
	st, err := fh.Stat()
	require.NoError(t, err)
	f, err := Open(p, fh, st.Size())
	require.NoError(t, err)
	i, ok := f.Info("model.layers.1.mlp.down_proj.weight")
	require.True(t, ok)
	require.Equal(t, []int64{64, 128}, i.Shape)
	require.Equal(t, F32, i.DType)
	row := make([]float32, 128)
	require.NoError(t, f.ReadFloat32(i.Name, 63, 1, row))
	for _, v := range row {
		require.Equal(t, quant.RoundF16(v), v) // fixture weights are fp16-exact
	}
}

func modelFS(t *testing.T) fstest.MapFS {
	a := writeBytes(t, []Tensor{
		{Name: "a", DType: F32, Shape: []int64{2}, Data: f32Bytes(1, 2)},
		{Name: "unlisted", DType: F32, Shape: []int64{1}, Data: f32Bytes(9)},
	}, nil)
	b := writeBytes(t, []Tensor{{Name: "b", DType: F16, Shape: []int64{1, 2}, Data: u16Bytes(0x3c00, 0x4000)}}, nil)
	index := `{"metadata":{"total_size":12},"weight_map":{"b":"s2.safetensors","a":"s1.safetensors"}}`
	return fstest.MapFS{
		"m/s1.safetensors":          {Data: a},
		"m/s2.safetensors":          {Data: b},
		"m/" + IndexFile:            {Data: []byte(index)},
		"single/" + SingleFile:      {Data: b},
		"single/" + IndexFile:       {Data: []byte("ignored")},
		"none/config.json":          {Data: []byte("{}")},
		"missing/" + IndexFile:      {Data: []byte(`{"weight_map":{"a":"s1.safetensors","b":"gone.safetensors"}}`)},
		"missing/s1.safetensors":    {Data: a},
		"notinshard/" + IndexFile:   {Data: []byte(`{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}}`)},
		"notinshard/s1.safetensors": {Data: a},
		"corrupt/" + IndexFile:      {Data: []byte(`{"weight_map":{"a":"s1.safetensors"}}`)},
		"corrupt/s1.safetensors":    {Data: a[:len(a)-1]},
	}
}

func TestOpenFS(t *testing.T) {
	fsys := modelFS(t)
	src, err := OpenFS(fsys, "m")
	require.NoError(t, err)
	defer src.Close()
	require.Equal(t, []string{"a", "b"}, src.Names()) // only what the index lists
	i, ok := src.Info("b")
	require.True(t, ok)
	require.Equal(t, "m/s2.safetensors", i.File)
	dst := make([]float32, 2)
	require.NoError(t, src.ReadFloat32("b", 0, 1, dst))
	require.Equal(t, []float32{1, 2}, dst)
	require.NoError(t, src.ReadFloat32("a", 0, 1, dst))
	require.Equal(t, []float32{1, 2}, dst)
	_, ok = src.Info("unlisted")
	require.False(t, ok)
	r, err := src.Raw("a")
	require.NoError(t, err)
	require.Equal(t, int64(8), r.Size())

	single, err := OpenFS(fsys, "single")
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, single.Names())
	require.NoError(t, single.Close())

	_, err = OpenFS(fsys, "none")
	require.ErrorContains(t, err, "neither")
	_, err = OpenFS(fsys, "missing")
	require.ErrorContains(t, err, "gone.safetensors")
	require.ErrorContains(t, err, "missing/"+IndexFile)
	_, err = OpenFS(fsys, "notinshard")
	require.ErrorContains(t, err, `tensor "b" is mapped to s1.safetensors`)
	_, err = OpenFS(fsys, "corrupt")
	require.ErrorContains(t, err, "corrupt/s1.safetensors")
}

func TestParseIndexRejects(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{}`, "missing weight_map"},
		{`{"weight_map":null}`, "missing weight_map"},
		{`{"weight_map":{}}`, "empty"},
		{`{"weight_map":{"a":"../x.safetensors"}}`, "invalid shard"},
		{`{"weight_map":{"a":"sub/x.safetensors"}}`, "invalid shard"},
		{`{"weight_map":{"a":""}}`, "invalid shard"},
		{`{"weight_map":{"a":"x","a":"y"}}`, `duplicate key "a"`},
		{`{"weight_map":{"a":1}}`, "weight_map"},
		{`{"weight_map":{"":"x"}}`, "empty tensor name"},
		{`{"weight_map":{"a":"x"}} {}`, "after"},
		{`[`, "idx.json"},
	} {
		_, err := ParseIndex([]byte(c.in), "idx.json")
		require.Error(t, err, c.in)
		require.Contains(t, err.Error(), "idx.json", c.in)
		require.Contains(t, err.Error(), c.want, c.in)
	}
	wm, err := ParseIndex([]byte(`{"metadata":{"total_size":3},"weight_map":{"a":"x.safetensors"}}`), "idx.json")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "x.safetensors"}, wm)
}

func TestOpenFilesAndDigest(t *testing.T) {
	a := mustOpen(t, "a", writeBytes(t, []Tensor{{Name: "x", DType: F32, Shape: []int64{1}, Data: f32Bytes(1)}}, nil))
	b := mustOpen(t, "b", writeBytes(t, []Tensor{{Name: "x", DType: F32, Shape: []int64{1}, Data: f32Bytes(2)}}, nil))
	c := mustOpen(t, "c", writeBytes(t, []Tensor{{Name: "x", DType: F32, Shape: []int64{1, 1}, Data: f32Bytes(2)}}, nil))
	_, err := OpenFiles(a, b)
	require.ErrorContains(t, err, `tensor "x" is in both a and b`)
	sa, err := OpenFiles(a)
	require.NoError(t, err)
	sb, _ := OpenFiles(b)
	sc, _ := OpenFiles(c)
	require.Equal(t, sa.Digest(), sb.Digest()) // data does not enter the digest
	require.NotEqual(t, sa.Digest(), sc.Digest())
	require.Len(t, sa.Digest(), 64)
}

func TestInfoIsACopy(t *testing.T) {
	f := mustOpen(t, "a", writeBytes(t, []Tensor{{Name: "x", DType: F32, Shape: []int64{1}, Data: f32Bytes(1)}}, nil))
	i, _ := f.Info("x")
	i.Shape[0] = 7
	j, _ := f.Info("x")
	require.Equal(t, []int64{1}, j.Shape)
	require.True(t, strings.HasPrefix(string(F16), "F"))
}
