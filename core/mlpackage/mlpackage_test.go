package mlpackage

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"lorapte/core/coremlspec/coremlpb"
	"lorapte/core/coremlspec/milpb"
	"lorapte/core/mil"
	"lorapte/core/milblob"
)

func TestManifestFormat(t *testing.T) {
	a := Manifest([]byte("seed"))
	require.Equal(t, a, Manifest([]byte("seed")), "deterministic")
	require.NotEqual(t, a, Manifest([]byte("other")))

	m, err := ParseManifest(a)
	require.NoError(t, err)
	mid, wid := ItemID([]byte("seed"), "model.mlmodel"), ItemID([]byte("seed"), "weights")
	require.Regexp(t, regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-8[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`), mid)
	require.Equal(t, mid, m.RootModelIdentifier)
	require.Equal(t, "com.apple.CoreML/model.mlmodel", m.Root().Path)

	first, second := mid, wid
	if wid < mid {
		first, second = wid, mid
	}
	items := map[string]string{
		mid: "            \"author\": \"com.apple.CoreML\",\n            \"description\": \"CoreML Model Specification\",\n            \"name\": \"model.mlmodel\",\n            \"path\": \"com.apple.CoreML/model.mlmodel\"\n",
		wid: "            \"author\": \"com.apple.CoreML\",\n            \"description\": \"CoreML Model Weights\",\n            \"name\": \"weights\",\n            \"path\": \"com.apple.CoreML/weights\"\n",
	}
	want := "{\n    \"fileFormatVersion\": \"1.0.0\",\n    \"itemInfoEntries\": {\n" +
		"        \"" + first + "\": {\n" + items[first] + "        },\n" +
		"        \"" + second + "\": {\n" + items[second] + "        }\n" +
		"    },\n    \"rootModelIdentifier\": \"" + mid + "\"\n}\n"
	require.Equal(t, want, string(a))
}

func TestParseManifestRejects(t *testing.T) {
	good := Manifest([]byte("x"))
	var obj map[string]any
	require.NoError(t, json.Unmarshal(good, &obj))
	root := obj["rootModelIdentifier"].(string)
	mutate := func(f func(o map[string]any)) []byte {
		var o map[string]any
		require.NoError(t, json.Unmarshal(good, &o))
		f(o)
		b, err := json.Marshal(o)
		require.NoError(t, err)
		return b
	}
	item := func(o map[string]any) map[string]any {
		return o["itemInfoEntries"].(map[string]any)[root].(map[string]any)
	}
	cases := map[string][]byte{
		"Manifest.json":           []byte("{not json"),
		"fileFormatVersion":       mutate(func(o map[string]any) { o["fileFormatVersion"] = "2.0.0" }),
		"fileFormatVersion must":  mutate(func(o map[string]any) { delete(o, "fileFormatVersion") }),
		`has no "author"`:         mutate(func(o map[string]any) { delete(item(o), "author") }),
		`"name" is not a string`:  mutate(func(o map[string]any) { item(o)["name"] = 3 }),
		"rootModelIdentifier mis": mutate(func(o map[string]any) { delete(o, "rootModelIdentifier") }),
		"is not an item":          mutate(func(o map[string]any) { o["rootModelIdentifier"] = "nope" }),
		"itemInfoEntries missing": mutate(func(o map[string]any) { delete(o, "itemInfoEntries") }),
		"not a clean relative":    mutate(func(o map[string]any) { item(o)["path"] = "../../etc/passwd" }),
		"not a clean relative p":  mutate(func(o map[string]any) { item(o)["path"] = "/abs" }),
	}
	for msg, data := range cases {
		_, err := ParseManifest(data)
		require.Error(t, err, msg)
		require.Contains(t, err.Error(), strings.TrimSuffix(strings.TrimSuffix(msg, " mis"), " p"), msg)
	}
}

func TestFilesAndWriteDir(t *testing.T) {
	man := Manifest([]byte("s"))
	model := []byte("model-bytes")
	weights := milblob.Header(0)
	fs := Files(model, man, int64(len(weights)))
	require.Equal(t, []File{
		{Path: "Data/com.apple.CoreML/model.mlmodel", Size: 11, Data: model},
		{Path: "Data/com.apple.CoreML/weights/weight.bin", Size: 64},
		{Path: "Manifest.json", Size: int64(len(man)), Data: man},
	}, fs)

	dir := filepath.Join(t.TempDir(), "x.mlpackage")
	require.NoError(t, WriteDir(dir, man, model, bytes.NewReader(weights)))
	for _, f := range fs {
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Path)))
		require.NoError(t, err)
		require.Equal(t, f.Size, st.Size())
	}
	require.ErrorContains(t, WriteDir(dir, man, model, bytes.NewReader(weights)), "not empty")
}

// pkg is a small valid 2-function package for the negative Check tests.
type pkg struct {
	manifest, weights []byte
	model             *coremlpb.Model
	wOff, sOff, bOff  uint64
}

func buildPkg(t testing.TB) *pkg {
	t.Helper()
	plan := milblob.NewPlan()
	w := milblob.PackInt4([]int8{-4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3})
	scale := make([]byte, 16) // fp16 [4,2]
	bias := make([]byte, 24)  // fp16 [12] (10+ elements go to the blob file)
	p := &pkg{manifest: Manifest([]byte("t"))}
	p.wOff = plan.AddBytes(milblob.INT4, 32, w)
	p.sOff = plan.AddBytes(milblob.FP16, 8, scale)
	p.bOff = plan.AddBytes(milblob.FP16, 12, bias)
	var buf bytes.Buffer
	require.NoError(t, milblob.NewWriter(&buf, plan).Close())
	p.weights = buf.Bytes()

	prog := mil.NewProgram()
	for _, fn := range []struct {
		name string
		S    int64
	}{{"forward", 1}, {"prefill", 3}} {
		f := prog.Func(fn.name)
		x := f.Input("x", mil.FP16, 1, fn.S, 8)
		wq := f.ConstexprBlockwiseShiftScale("w", mil.Blob(mil.INT4, []int64{4, 8}, p.wOff), mil.Blob(mil.FP16, []int64{4, 2}, p.sOff))
		y := f.Linear("y", x, wq, nil)
		b := f.Const("b", mil.Blob(mil.FP16, []int64{12}, p.bOff))
		z := f.Reshape("z", y, []int64{-1})
		f.SetOutputs(f.Concat("out", 0, z, b))
	}
	m, err := prog.Model("forward")
	require.NoError(t, err)
	p.model = m
	return p
}

func (p *pkg) check(t *testing.T) *Report {
	t.Helper()
	b, err := mil.Marshal(p.model)
	require.NoError(t, err)
	r, err := milblob.NewReader(bytes.NewReader(p.weights), int64(len(p.weights)))
	require.NoError(t, err)
	return Check(p.manifest, b, r)
}

func ops(m *coremlpb.Model, fn string) []*milpb.Operation {
	return m.GetMlProgram().GetFunctions()[fn].GetBlockSpecializations()["CoreML8"].GetOperations()
}

func findOp(m *coremlpb.Model, fn, name string) *milpb.Operation {
	for _, op := range ops(m, fn) {
		if n, _ := opName(op); n == name {
			return op
		}
	}
	return nil
}

func TestCheckGood(t *testing.T) {
	rep := buildPkg(t).check(t)
	require.Empty(t, rep.Findings, rep.Summary())
	n, nbytes := rep.Shared()
	require.Equal(t, 3, n)
	require.Equal(t, int64(16+16+24), nbytes)
	require.Equal(t, []string{"forward", "prefill"}, rep.Functions)
	require.Equal(t, 1, rep.Ops["prefill"]["linear"])
}

func TestCheckFindings(t *testing.T) {
	cases := map[string]func(p *pkg){
		"MIL3": func(p *pkg) { // dangling var
			findOp(p.model, "prefill", "y").GetInputs()["x"].GetArguments()[0].Binding = &milpb.Argument_Binding_Name{Name: "nowhere"}
		},
		"MIL5": func(p *pkg) { delete(findOp(p.model, "forward", "y").GetAttributes(), "name") },
		"BLOB3": func(p *pkg) { // blob dtype mismatch: declare the int4 blob as uint4
			d := findOp(p.model, "forward", "w").GetInputs()["data"].GetArguments()[0].GetValue()
			d.Type.GetTensorType().DataType = milpb.DataType_UINT4
		},
		"BLOB2": func(p *pkg) { // offset not on a record
			findOp(p.model, "forward", "b").GetAttributes()["val"].GetBlobFileValue().Offset = p.sOff + 64
		},
		"BLOB4": func(p *pkg) { // shape does not match blob size
			v := findOp(p.model, "forward", "b").GetAttributes()["val"]
			v.Type = mil.TensorType(mil.FP16, []int64{11})
			findOp(p.model, "forward", "b").GetOutputs()[0].Type = mil.TensorType(mil.FP16, []int64{11})
		},
		"BLOB5": func(p *pkg) {
			findOp(p.model, "forward", "b").GetAttributes()["val"].GetBlobFileValue().FileName = "@model_path/weights/other.bin"
		},
		"DESC2": func(p *pkg) { p.model.Description.DefaultFunctionName = "main" },
		"DESC1": func(p *pkg) {
			p.model.Description.Input = p.model.Description.Functions[0].Input
		},
		"DESC4":  func(p *pkg) { p.model.Description.Functions = p.model.Description.Functions[:1] },
		"DESC10": func(p *pkg) { p.model.SpecificationVersion = 8 },
		"DESC6":  func(p *pkg) { p.model.Description.Functions[1].Output[0].Name = "logits" },
		"DESC9": func(p *pkg) {
			p.model.Description.Functions[1].Input[0].Type.GetMultiArrayType().Shape = []int64{1, 1, 8}
		},
		"DESC8": func(p *pkg) {
			p.model.Description.Functions[1].Input[0].Type.GetMultiArrayType().DataType = coremlpb.ArrayFeatureType_FLOAT32
		},
		"MIL4": func(p *pkg) { findOp(p.model, "forward", "z").Outputs[0].Name = "y" },
		"MIL7": func(p *pkg) {
			p.model.GetMlProgram().GetFunctions()["forward"].GetBlockSpecializations()["CoreML8"].Outputs[0] = "ghost"
		},
		"MIL9": func(p *pkg) { // scale rank differs from data rank
			s := findOp(p.model, "forward", "w").GetInputs()["scale"].GetArguments()[0].GetValue()
			s.Type = mil.TensorType(mil.FP16, []int64{8})
		},
		"MIL12": func(p *pkg) {
			op := findOp(p.model, "forward", "y")
			op.Inputs["gamma"] = op.Inputs["x"]
		},
		"MIL6": func(p *pkg) {
			findOp(p.model, "forward", "b").Outputs[0].Type = mil.TensorType(mil.FP32, []int64{12})
		},
		"MIL10": func(p *pkg) { // int32 immediate stored as floats
			op := findOp(p.model, "forward", "z_shape")
			op.GetAttributes()["val"].GetImmediateValue().GetTensor().Value = &milpb.TensorValue_Floats{Floats: &milpb.TensorValue_RepeatedFloats{Values: []float32{8}}}
		},
		"MIL2":  func(p *pkg) { p.model.GetMlProgram().GetFunctions()["forward"].Opset = "CoreML9" },
		"MDL3":  func(p *pkg) { p.model.Type = nil },
		"PKG1":  func(p *pkg) { p.manifest = []byte("{}") },
		"PKG3":  func(p *pkg) { p.manifest = dropWeightsItem(p.manifest) },
		"BLOB1": func(p *pkg) { p.weights[0] = 4 }, // header count one too high: the chain walk fails
		"BLOB6": func(p *pkg) {
			op := findOp(p.model, "prefill", "b")
			op.GetAttributes()["val"] = mil.F16([]int64{12}, make([]uint16, 12)).Proto()
			op2 := findOp(p.model, "forward", "b")
			op2.GetAttributes()["val"] = mil.F16([]int64{12}, make([]uint16, 12)).Proto()
		},
	}
	for id, mutate := range cases {
		p := buildPkg(t)
		p.model = proto.Clone(p.model).(*coremlpb.Model)
		mutate(p)
		rep := p.check(t)
		require.True(t, rep.Has(id), "%s not reported:\n%s", id, rep.Summary())
	}
}

func dropWeightsItem(man []byte) []byte {
	m, _ := ParseManifest(man)
	for id, it := range m.ItemInfoEntries {
		if it.Name == "weights" {
			delete(m.ItemInfoEntries, id)
		}
	}
	return m.Bytes()
}

func TestCheckBadWeightFile(t *testing.T) {
	p := buildPkg(t)
	p.weights[int(p.wOff)] = 0 // break the first sentinel
	rep := p.check(t)
	require.True(t, rep.Has("BLOB1"), rep.Summary()) // chain walk fails
	require.True(t, rep.Has("BLOB2"), rep.Summary()) // the reference cannot be resolved

	b, err := mil.Marshal(p.model)
	require.NoError(t, err)
	rep = Check(p.manifest, b, nil)
	require.True(t, rep.Has("BLOB1"))

	rep = Check(p.manifest, []byte{0xFF, 0xFF}, nil)
	require.True(t, rep.Has("MDL1"))
}

func TestCheckDir(t *testing.T) {
	p := buildPkg(t)
	b, err := mil.Marshal(p.model)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "p.mlpackage")
	require.NoError(t, WriteDir(dir, p.manifest, b, bytes.NewReader(p.weights)))
	rep, err := CheckDir(dir)
	require.NoError(t, err)
	require.Empty(t, rep.Findings, rep.Summary())
}

func FuzzParseManifest(f *testing.F) {
	f.Add(Manifest([]byte("a")))
	f.Add([]byte(`{"fileFormatVersion":"1.0.0","itemInfoEntries":{"A":{"author":"x","description":"","name":"n","path":"x/n"}},"rootModelIdentifier":"A"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err == nil {
			if _, ok := m.ItemInfoEntries[m.RootModelIdentifier]; !ok {
				t.Fatal("root not an item")
			}
		}
	})
}

func FuzzCheck(f *testing.F) {
	p := buildPkg(f)
	good, err := mil.Marshal(p.model)
	require.NoError(f, err)
	f.Add(good, p.weights)
	f.Add([]byte{}, []byte{})
	f.Add(good, milblob.Header(3))
	f.Fuzz(func(t *testing.T, model, weights []byte) {
		var r *milblob.Reader
		if len(weights) > 0 {
			r, _ = milblob.NewReader(bytes.NewReader(weights), int64(len(weights)))
		}
		rep := Check(Manifest([]byte("f")), model, r)
		_ = rep.Summary()
	})
}
