package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/inmemfs"
	"lorapte/core/mlpackage"
	"lorapte/core/pte"
	"lorapte/core/safetensors"
)

// TestWriteFuzzSeeds regenerates the committed seed corpora
// (core/<pkg>/testdata/fuzz/<Target>/) from the tiny fixture: small valid
// files cut from a real export plus a few corrupt ones. It only runs when
// asked, since the corpora are committed:
//
//	LORAPTE_WRITE_FUZZ_SEEDS=1 go test ./cmd/lorapte -run TestWriteFuzzSeeds
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("LORAPTE_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set LORAPTE_WRITE_FUZZ_SEEDS=1 to regenerate the fuzz seed corpora")
	}
	dir := t.TempDir()
	model, adapter := microModel(t, dir)

	// The smallest export (one partition) and a multifunction one with an
	// adapter and graph breaks (three partitions, shared blobs).
	small := filepath.Join(dir, "small.pte")
	code, _, stderr := runCLI(t, "export", "--model", model, "--output", small, "--no-graph-breaks",
		"-E", "4,8", "--input-len", "2", "--max-context-len", "4", "-q")
	require.Equal(t, 0, code, stderr)
	mfPath := filepath.Join(dir, "mf.pte")
	code, _, stderr = runCLI(t, "export", "--model", model, "--output", mfPath, "--multifunction",
		"--adapter", "mlpq="+adapter, "--no-graph-breaks", "--input-len", "2", "--max-context-len", "4", "-q")
	require.Equal(t, 0, code, stderr)
	smallB, mfB := readFile(t, small), readFile(t, mfPath)

	// Pieces of the small export: the delegate blob and its files.
	f, err := pte.Read(bytes.NewReader(smallB), int64(len(smallB)))
	require.NoError(t, err)
	require.NotEmpty(t, f.Program.NamedData)
	sr, err := f.Segment(f.Program.NamedData[0].Segment)
	require.NoError(t, err)
	blob := make([]byte, sr.Size())
	_, err = sr.ReadAt(blob, 0)
	require.NoError(t, err)
	fsys, err := inmemfs.Open(bytes.NewReader(blob), int64(len(blob)))
	require.NoError(t, err)
	file := func(p string) []byte {
		r, err := fsys.Open(p)
		require.NoError(t, err, p)
		b := make([]byte, r.Size())
		_, err = r.ReadAt(b, 0)
		require.NoError(t, err)
		return b
	}
	manifest := file("model.mlpackage/" + mlpackage.ManifestPath)
	mlmodel := file("model.mlpackage/" + mlpackage.ModelPath)
	weights := file("model.mlpackage/" + mlpackage.WeightPath)

	w := seedWriter{t: t, root: "../../core"}

	// .pte readers.
	prog := smallB[:f.SegmentBaseOffset]
	mf, err := pte.Read(bytes.NewReader(mfB), int64(len(mfB)))
	require.NoError(t, err)
	for _, tgt := range []string{"pte/FuzzRead", "inspect/FuzzInspect"} {
		w.bytes(tgt, "small", smallB)
		w.bytes(tgt, "program_only", prog)
		w.bytes(tgt, "program_cut", prog[:len(prog)/2])
		w.bytes(tgt, "bad_segment_base", patchSegmentBase(prog, 1<<40))
	}
	// The multifunction file whole for inspect (shared blobs, adapter
	// methods); its program alone for the .pte reader, which reads no
	// segment data.
	w.bytes("inspect/FuzzInspect", "multifunction", mfB)
	w.bytes("pte/FuzzRead", "multifunction_program", mfB[:mf.SegmentBaseOffset])
	// Flattened directory and the Core ML package inside it.
	for _, tgt := range []string{"inmemfs/FuzzOpen", "inspect/FuzzOpenPackage"} {
		w.bytes(tgt, "delegate_blob", blob)
		w.bytes(tgt, "trailer_cut", blob[:len(blob)-5])
	}
	w.bytes("inspect/FuzzOpenPackage", "trailer_only", blob[fsys.MetadataOffset():])
	// weight.bin.
	w.write("milblob/FuzzReader", "weight_bin", fmt.Sprintf("[]byte(%q)\nuint64(64)\n", weights))
	w.write("milblob/FuzzReader", "weight_bin_second", fmt.Sprintf("[]byte(%q)\nuint64(128)\n", weights))
	w.write("milblob/FuzzReader", "weight_bin_cut", fmt.Sprintf("[]byte(%q)\nuint64(64)\n", weights[:200]))
	// Core ML model spec (+ its weights) and manifest.
	w.write("mlpackage/FuzzCheck", "model_and_weights", fmt.Sprintf("[]byte(%q)\n[]byte(%q)\n", mlmodel, weights))
	w.write("mlpackage/FuzzCheck", "model_no_weights", fmt.Sprintf("[]byte(%q)\n[]byte(%q)\n", mlmodel, []byte{}))
	w.write("mlpackage/FuzzCheck", "model_cut", fmt.Sprintf("[]byte(%q)\n[]byte(%q)\n", mlmodel[:len(mlmodel)/2], weights[:64]))
	w.bytes("mlpackage/FuzzParseManifest", "manifest", manifest)
	w.bytes("mlpackage/FuzzParseManifest", "manifest_no_root", bytes.Replace(manifest, []byte("rootModelIdentifier"), []byte("rootModelIdentifieR"), 1))

	// safetensors: a real header cut from the fixture, a small real file,
	// an adapter pair, bf16, and broken offsets.
	st := readFile(t, tiny+"/model/model.safetensors")
	hlen := binary.LittleEndian.Uint64(st)
	w.bytes("safetensors/FuzzOpen", "fixture_header_only", st[:8+hlen])
	w.bytes("safetensors/FuzzOpen", "fixture_small", subset(t, tiny+"/model/model.safetensors", "model.norm.weight", "model.layers.0.input_layernorm.weight"))
	w.bytes("safetensors/FuzzOpen", "adapter_pair", subset(t, tiny+"/adapters/attn/adapter_model.safetensors",
		"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"))
	w.bytes("safetensors/FuzzOpen", "bf16_small", subset(t, "../../testdata/models/llama-tied-bf16/model.safetensors", "model.norm.weight"))
	ov := subset(t, tiny+"/model/model.safetensors", "model.norm.weight", "model.layers.0.input_layernorm.weight")
	w.bytes("safetensors/FuzzOpen", "overlap", bytes.Replace(ov, []byte("[256,512]"), []byte("[128,384]"), 1))
	w.bytes("safetensors/FuzzOpen", "header_len_huge", append([]byte{0, 0, 0, 0x40, 0, 0, 0, 0}, ov[8:]...))
	idx := readFile(t, "../../testdata/models/llama-sharded/model.safetensors.index.json")
	w.bytes("safetensors/FuzzIndex", "sharded_index", idx)
	w.bytes("safetensors/FuzzIndex", "shard_escape", bytes.Replace(idx, []byte(`"model-00001`), []byte(`"../model-00001`), 1))

	// config.json and adapter_config.json.
	cfgs, _ := filepath.Glob("../../testdata/models/*/config.json")
	cfgs = append(cfgs, tiny+"/model/config.json")
	for _, c := range cfgs {
		w.bytes("hf/FuzzParseConfig", filepath.Base(filepath.Dir(c)), readFile(t, c))
	}
	w.bytes("hf/FuzzParseConfig", "vocab_1e12", bytes.Replace(readFile(t, tiny+"/model/config.json"), []byte(`"vocab_size": 128`), []byte(`"vocab_size": 1000000000000`), 1))
	w.bytes("hf/FuzzParseConfig", "nested", []byte(`{"rope_scaling":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000)+`}`))
	ads, _ := filepath.Glob("../../testdata/*/adapters/*/adapter_config.json")
	more, _ := filepath.Glob("../../testdata/models/*/adapters/*/adapter_config.json")
	for _, a := range append(ads, more...) {
		w.bytes("lora/FuzzParseConfig", filepath.Base(filepath.Dir(a)), readFile(t, a))
	}
	w.bytes("lora/FuzzParseConfig", "patterns", []byte(`{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":".*(q|v)_proj","use_rslora":true,"rank_pattern":{"layers.0.self_attn.q_proj":4},"alpha_pattern":{"v_proj":2},"layers_to_transform":[0],"exclude_modules":["o_proj"]}`))
}

// microModel cuts a smaller model out of the tiny fixture (the leading
// rows and columns of each tensor): one layer, hidden 16, vocab 16, and a
// layer-0 cut of the mlpq adapter, so the seeds stay a few KB.
func microModel(t *testing.T, dir string) (model, adapter string) {
	model, adapter = filepath.Join(dir, "micro"), filepath.Join(dir, "micro-mlpq")
	require.NoError(t, os.MkdirAll(model, 0o755))
	require.NoError(t, os.MkdirAll(adapter, 0o755))
	cfg := readFile(t, tiny+"/model/config.json")
	for _, r := range [][2]string{{`"hidden_size": 64`, `"hidden_size": 16`}, {`"intermediate_size": 128`, `"intermediate_size": 32`},
		{`"num_hidden_layers": 2`, `"num_hidden_layers": 1`}, {`"num_attention_heads": 4`, `"num_attention_heads": 2`},
		{`"num_key_value_heads": 2`, `"num_key_value_heads": 1`}, {`"head_dim": 16`, `"head_dim": 8`}, {`"vocab_size": 128`, `"vocab_size": 16`}} {
		require.True(t, bytes.Contains(cfg, []byte(r[0])), r[0])
		cfg = bytes.Replace(cfg, []byte(r[0]), []byte(r[1]), 1)
	}
	require.NoError(t, os.WriteFile(filepath.Join(model, "config.json"), cfg, 0o644))
	// Output × input features of each projection in the micro model.
	dims := map[string][2]int64{"q_proj": {16, 16}, "k_proj": {8, 16}, "v_proj": {8, 16}, "o_proj": {16, 16},
		"gate_proj": {32, 16}, "up_proj": {32, 16}, "down_proj": {16, 32}}
	var base []safetensors.Tensor
	for _, x := range loadAll(t, tiny+"/model/model.safetensors") {
		if strings.Contains(x.Name, ".layers.1.") {
			continue
		}
		shape := []int64{16}
		switch {
		case x.Name == "model.embed_tokens.weight" || x.Name == "lm_head.weight":
			shape = []int64{16, 16}
		case len(x.Shape) == 2:
			d := dims[strings.Split(x.Name, ".")[4]]
			shape = []int64{d[0], d[1]}
		}
		base = append(base, cut(x, shape))
	}
	writeST(t, filepath.Join(model, "model.safetensors"), base)
	var ad []safetensors.Tensor
	for _, x := range loadAll(t, tiny+"/adapters/mlpq/adapter_model.safetensors") {
		if !strings.Contains(x.Name, ".layers.0.") {
			continue
		}
		d := dims[strings.Split(x.Name, ".")[6]]
		shape := []int64{x.Shape[0], d[1]} // lora_A: [r, in]
		if strings.Contains(x.Name, "lora_B") {
			shape = []int64{d[0], x.Shape[1]} // lora_B: [out, r]
		}
		ad = append(ad, cut(x, shape))
	}
	writeST(t, filepath.Join(adapter, "adapter_model.safetensors"), ad)
	require.NoError(t, os.WriteFile(filepath.Join(adapter, "adapter_config.json"), readFile(t, tiny+"/adapters/mlpq/adapter_config.json"), 0o644))
	return model, adapter
}

// loadAll reads every tensor of a safetensors file.
func loadAll(t *testing.T, p string) []safetensors.Tensor {
	data := readFile(t, p)
	f, err := safetensors.Open(p, bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	var out []safetensors.Tensor
	for _, n := range f.Names() {
		i, _ := f.Info(n)
		out = append(out, safetensors.Tensor{Name: n, DType: i.DType, Shape: i.Shape, Data: data[i.Offset : i.Offset+i.Bytes]})
	}
	return out
}

// cut keeps the leading block of shape of a 1-D or 2-D tensor.
func cut(x safetensors.Tensor, shape []int64) safetensors.Tensor {
	es := int64(x.DType.Size())
	cols, newCols := int64(1), int64(1)
	if len(x.Shape) == 2 {
		cols, newCols = x.Shape[1], shape[1]
	}
	var data []byte
	for r := int64(0); r < shape[0]; r++ {
		if len(x.Shape) == 1 {
			data = x.Data[:shape[0]*es]
			break
		}
		data = append(data, x.Data[r*cols*es:(r*cols+newCols)*es]...)
	}
	return safetensors.Tensor{Name: x.Name, DType: x.DType, Shape: shape, Data: data}
}

func writeST(t *testing.T, p string, ts []safetensors.Tensor) {
	var buf bytes.Buffer
	require.NoError(t, safetensors.Write(&buf, ts, nil))
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
}

func readFile(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

// subset writes a safetensors file holding the named tensors of p.
func subset(t *testing.T, p string, names ...string) []byte {
	data := readFile(t, p)
	f, err := safetensors.Open(p, bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	var ts []safetensors.Tensor
	for _, n := range names {
		i, ok := f.Info(n)
		require.True(t, ok, n)
		ts = append(ts, safetensors.Tensor{Name: n, DType: i.DType, Shape: i.Shape, Data: data[i.Offset : i.Offset+i.Bytes]})
	}
	var buf bytes.Buffer
	require.NoError(t, safetensors.Write(&buf, ts, nil))
	return buf.Bytes()
}

// patchSegmentBase rewrites the extended header's segment_base_offset.
func patchSegmentBase(b []byte, v uint64) []byte {
	out := append([]byte(nil), b...)
	binary.LittleEndian.PutUint64(out[24:], v)
	return out
}

type seedWriter struct {
	t    *testing.T
	root string
}

func (s seedWriter) bytes(target, name string, b []byte) {
	s.write(target, name, fmt.Sprintf("[]byte(%q)\n", b))
}

// write stores one corpus entry in go test's "go test fuzz v1" format.
func (s seedWriter) write(target, name, values string) {
	pkg, fn, _ := strings.Cut(target, "/")
	dir := filepath.Join(s.root, pkg, "testdata", "fuzz", fn)
	require.NoError(s.t, os.MkdirAll(dir, 0o755))
	require.NoError(s.t, os.WriteFile(filepath.Join(dir, "seed_"+name), []byte("go test fuzz v1\n"+values), 0o644))
}
