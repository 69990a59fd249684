package pte

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The exporter writes its small JSON texts with Python's json.dumps defaults:
// separators ", " and ": ", and ensure_ascii (non-ASCII as \uXXXX). The helpers
// here reproduce that text exactly so lorapte's bytes match an export.

// appendPyString appends s as json.dumps quotes it. Invalid UTF-8 bytes become
// U+FFFD, as a Python str could not hold them either.
func appendPyString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r < 0x20 || (r > 0x7e && r < 0x10000):
			b = append(b, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15])
		case r >= 0x10000:
			r -= 0x10000
			hi, lo := 0xd800+(r>>10), 0xdc00+(r&0x3ff)
			b = append(b, '\\', 'u', hex[hi>>12&15], hex[hi>>8&15], hex[hi>>4&15], hex[hi&15])
			b = append(b, '\\', 'u', hex[lo>>12&15], hex[lo>>8&15], hex[lo>>4&15], hex[lo&15])
		default:
			b = append(b, byte(r))
		}
	}
	return append(b, '"')
}

func appendPyStrings(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendPyString(b, s)
	}
	return append(b, ']')
}

// ---- pytree specs (pte.md §3.6 form (a)) ----

const treeLeaf = `{"type": null, "context": null, "children_spec": []}`

func treeNode(typ, context string, children []string) string {
	return `{"type": "` + typ + `", "context": ` + string(appendPyString(nil, context)) +
		`, "children_spec": [` + strings.Join(children, ", ") + `]}`
}

func leaves(n int) []string {
	l := make([]string, n)
	for i := range l {
		l[i] = treeLeaf
	}
	return l
}

// TreeSpecInputs is encoded_inp_str for n positional tensor inputs: the
// (args tuple, kwargs dict) pair of protocol-1 pytree JSON.
func TreeSpecInputs(n int) string {
	args := treeNode("builtins.tuple", "null", leaves(n))
	kwargs := treeNode("builtins.dict", "[]", nil)
	return "[1, " + treeNode("builtins.tuple", "null", []string{args, kwargs}) + "]"
}

// TreeSpecOutputs is encoded_out_str for k outputs: a bare leaf for k == 1,
// otherwise a tuple of k leaves.
func TreeSpecOutputs(k int) string {
	if k == 1 {
		return "[1, " + treeLeaf + "]"
	}
	return "[1, " + treeNode("builtins.tuple", "null", leaves(k)) + "]"
}

// treeSpecList is the spec of a Python list of k leaves (constant methods with
// several values).
func treeSpecList(k int) string {
	return "[1, " + treeNode("builtins.list", "null", leaves(k)) + "]"
}

// ConstantMethod is the ExecutionPlan of a constant method (pte.md §4): no
// inputs, one empty chain, outputs = the leaves. One leaf is a bare value;
// several leaves are a Python list. Tensor leaves must carry DataBufferIdx >= 1
// (see ConstantSegmentBuilder).
func ConstantMethod(name string, leafValues ...EValue) Method {
	if len(leafValues) == 1 {
		return constantMethod(name, TreeSpecOutputs(1), leafValues)
	}
	return ConstantListMethod(name, leafValues...)
}

// ConstantListMethod is a constant method whose value is a Python list of the
// leaves, even when there is only one (or none).
func ConstantListMethod(name string, leafValues ...EValue) Method {
	return constantMethod(name, treeSpecList(len(leafValues)), leafValues)
}

func constantMethod(name, outSpec string, leafValues []EValue) Method {
	m := Method{
		Name:                name,
		OutputSpec:          outSpec,
		Values:              leafValues,
		NonConstBufferSizes: []int64{0},
	}
	for i := range leafValues {
		m.Outputs = append(m.Outputs, int32(i))
	}
	return m
}

// ---- CMJR reference (pte.md §5.1) ----

// CMJRMagic starts a Core ML named-data reference.
const CMJRMagic = "CMJR"

// ErrNotCMJR means the bytes lack the CMJR magic: the runtime then treats them
// as the model blob itself (legacy single-method layout).
var ErrNotCMJR = errors.New("pte: processed bytes are not a CMJR reference")

// CMJR is a parsed Core ML named-data reference.
type CMJR struct {
	Key          string
	FunctionName string // "" when absent
	Version      int
}

// EncodeCMJR returns `CMJR{"version": 1, "key": K, "functionName": F}` exactly as
// the exporter writes it.
func EncodeCMJR(key, functionName string) []byte {
	b := []byte(CMJRMagic + `{"version": 1, "key": `)
	b = appendPyString(b, key)
	b = append(b, `, "functionName": `...)
	b = appendPyString(b, functionName)
	return append(b, '}')
}

// ParseCMJR parses a CMJR reference like the runtime: the JSON must be an object
// with a string "key"; "functionName" is optional; "version" is informative.
// Errors are Findings with ID K1 (not JSON / not an object) or K2 (no string
// key); bytes without the magic give ErrNotCMJR.
func ParseCMJR(data []byte) (CMJR, error) {
	if len(data) < 4 || string(data[:4]) != CMJRMagic {
		return CMJR{}, ErrNotCMJR
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data[4:], &obj); err != nil || obj == nil {
		return CMJR{}, Finding{ID: "K1", Msg: fmt.Sprintf("CMJR payload is not a JSON object: %.80q", data[4:])}
	}
	var c CMJR
	if err := json.Unmarshal(obj["key"], &c.Key); err != nil || !isJSONString(obj["key"]) {
		return CMJR{}, Finding{ID: "K2", Msg: "CMJR JSON has no string \"key\""}
	}
	if isJSONString(obj["functionName"]) {
		_ = json.Unmarshal(obj["functionName"], &c.FunctionName)
	}
	if v, err := strconv.Atoi(string(bytes.TrimSpace(obj["version"]))); err == nil {
		c.Version = v
	}
	return c, nil
}

func isJSONString(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '"'
}

// ---- metadata.json (pte.md §5.4) ----

// MethodIO names the Core ML inputs and outputs of one ExecuTorch method, in
// DelegateCall argument order.
type MethodIO struct {
	Method      string
	InputNames  []string
	OutputNames []string
}

// EncodeMetadata returns the multifunction metadata.json text
// {"identifier": ..., "methods": {name: {"inputNames": [...], "outputNames": [...]}, ...}}
// in json.dumps form; methods keep the given order.
func EncodeMetadata(identifier string, methods []MethodIO) []byte {
	b := []byte(`{"identifier": `)
	b = appendPyString(b, identifier)
	b = append(b, `, "methods": {`...)
	for i, m := range methods {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendPyString(b, m.Method)
		b = append(b, `: {"inputNames": `...)
		b = appendPyStrings(b, m.InputNames)
		b = append(b, `, "outputNames": `...)
		b = appendPyStrings(b, m.OutputNames)
		b = append(b, '}')
	}
	return append(b, "}}"...)
}

// Metadata is a parsed metadata.json. Fields of the wrong JSON type read as
// absent, as the runtime's checks treat them.
type Metadata struct {
	Identifier string
	// Methods is nil for single-function metadata.
	Methods     map[string]MethodIO
	InputNames  []string // single-function form
	OutputNames []string
}

// ParseMetadata parses metadata.json; only a non-object text is an error.
// Name lists that are not all strings are returned with a "" in that place.
func ParseMetadata(data []byte) (*Metadata, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("metadata.json is not valid UTF-8")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("metadata.json is not a JSON object: %v", err)
	}
	md := &Metadata{}
	if isJSONString(obj["identifier"]) {
		_ = json.Unmarshal(obj["identifier"], &md.Identifier)
	}
	md.InputNames = names(obj["inputNames"])
	md.OutputNames = names(obj["outputNames"])
	var methods map[string]json.RawMessage
	if json.Unmarshal(obj["methods"], &methods) == nil && len(methods) > 0 {
		md.Methods = map[string]MethodIO{}
		for name, raw := range methods {
			var m map[string]json.RawMessage
			_ = json.Unmarshal(raw, &m)
			md.Methods[name] = MethodIO{Method: name, InputNames: names(m["inputNames"]), OutputNames: names(m["outputNames"])}
		}
	}
	return md, nil
}

func names(raw json.RawMessage) []string {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil
	}
	out := make([]string, len(list))
	for i, r := range list {
		if isJSONString(r) {
			_ = json.Unmarshal(r, &out[i])
		}
	}
	return out
}
