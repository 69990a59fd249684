package safetensors

import (
	"bytes"
	"io"
	"testing"
)

func FuzzOpen(f *testing.F) {
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(rawFile(`{"__metadata__":{"k":"v"},"a":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]}}`, make([]byte, 8)))
	f.Add(rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, make([]byte, 8)))
	f.Add(rawFile(`{}`, nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{'})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Open("fuzz", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, n := range file.Names() {
			i, ok := file.Info(n)
			if !ok || i.Offset < 0 || i.Offset+i.Bytes > int64(len(data)) {
				t.Fatalf("tensor %q out of bounds: %+v", n, i)
			}
			r, err := file.Raw(n)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				t.Fatal(err)
			}
			if i.DType.IsFloat() && i.Numel() <= 1<<16 {
				rows, cols := i.rowsCols()
				dst := make([]float32, rows*cols)
				if err := file.ReadFloat32(n, 0, rows, dst); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

func FuzzIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":12},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../x"}}`))
	f.Add([]byte(`{"weight_map":{"a":"x","a":"y"}}`))
	f.Add([]byte(`{"weight_map":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		wm, err := ParseIndex(data, "fuzz.json")
		if err != nil {
			return
		}
		for k, v := range wm {
			if k == "" || v == "" || bytes.ContainsAny([]byte(v), "/\\") {
				t.Fatalf("accepted %q -> %q", k, v)
			}
		}
	})
}
