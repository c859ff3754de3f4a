package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type chart struct {
	Meta      map[string]interface{}
	Values    map[string]interface{}
	Templates map[string]string // "<chart>/templates/<file>" -> text
	Files     map[string][]byte // chart-relative path -> content (everything outside templates/)
}

type release struct {
	Name      string
	Namespace string
}

// loadChart reads a chart directory and any test overlays. An overlay works like the Marketplace
// deployer's test mode: its values.yaml is merged over the chart's, its other files replace or add.
func loadChart(dir string, overlays []string) (*chart, error) {
	metaPath := filepath.Join(dir, "Chart.yaml")
	meta, err := readYAMLMap(metaPath)
	if err != nil {
		return nil, err
	}
	name, _ := meta["name"].(string)
	if name == "" {
		return nil, fmt.Errorf("%s: field \"name\" is required", metaPath)
	}
	c := &chart{Meta: meta, Values: map[string]interface{}{}, Templates: map[string]string{}, Files: map[string][]byte{}}
	for _, d := range append([]string{dir}, overlays...) {
		if err := c.addDir(d, name); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *chart) addDir(dir, name string) error {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return fmt.Errorf("chart directory %s: not found", dir)
	}
	return filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case rel == "values.yaml":
			v, err := parseYAMLMap(data, p)
			if err != nil {
				return err
			}
			c.Values = mergeMaps(c.Values, v)
		case rel == "Chart.yaml":
		case strings.HasPrefix(rel, "templates/"):
			c.Templates[name+"/"+rel] = string(data)
		default:
			c.Files[rel] = data
		}
		return nil
	})
}

func readYAMLMap(p string) (map[string]interface{}, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read: %v", p, err)
	}
	return parseYAMLMap(data, p)
}

func parseYAMLMap(data []byte, source string) (map[string]interface{}, error) {
	var v map[string]interface{}
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %v", source, err)
	}
	if v == nil {
		v = map[string]interface{}{}
	}
	return v, nil
}

// mergeMaps merges src over dst recursively (maps merge, everything else replaces), like Helm's
// values coalescing for -f files. A null in src replaces, as `--set x=null` would in the deployer.
func mergeMaps(dst, src map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(dst)+len(src))
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// toYAML marshals like Helm's toYaml: two-space indent, sorted keys, no trailing newline.
func toYAML(v interface{}) (string, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(normalize(v)); err != nil {
		return "", err
	}
	_ = enc.Close()
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// normalize turns map[interface{}]interface{} (from some sprig functions) into string-keyed maps.
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, val := range t {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case map[string]interface{}:
		m := map[string]interface{}{}
		for k, val := range t {
			m[k] = normalize(val)
		}
		return m
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, val := range t {
			out[i] = normalize(val)
		}
		return out
	}
	return v
}

type files map[string][]byte

// Get returns a chart file's content, "" when absent (as Helm's .Files.Get does).
func (f files) Get(name string) string { return string(f[name]) }

// GetBytes returns a chart file's raw bytes.
func (f files) GetBytes(name string) []byte { return f[name] }

type capabilities struct {
	KubeVersion map[string]string
	APIVersions apiVersions
}

type apiVersions []string

// Has answers as a cluster with the listed groups would; used by charts to gate optional kinds.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

// render executes every template and joins the non-empty results like `helm template`.
func render(c *chart, values map[string]interface{}, rel release) (string, error) {
	chartName := c.Meta["name"].(string)
	t := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	// Helm removes these so a chart cannot read the renderer's environment.
	delete(funcs, "env")
	delete(funcs, "expandenv")
	includedDepth := map[string]int{}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		includedDepth[name]++
		defer func() { includedDepth[name]-- }()
		if includedDepth[name] > 100 {
			return "", fmt.Errorf("include %q: recursion too deep", name)
		}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		inner, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("tpl: %v", err)
		}
		var buf bytes.Buffer
		if err := inner.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf("%s", msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["toYaml"] = func(v interface{}) string {
		s, err := toYAML(v)
		if err != nil {
			return ""
		}
		return s
	}
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(normalize(v))
		if err != nil {
			return ""
		}
		return string(b)
	}
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	// No cluster is consulted while rendering, as with `helm template`.
	funcs["lookup"] = func(string, string, string, string) map[string]interface{} { return map[string]interface{}{} }
	t.Funcs(funcs)

	names := make([]string, 0, len(c.Templates))
	for n := range c.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := t.New(n).Parse(c.Templates[n]); err != nil {
			return "", fmt.Errorf("parse %s: %v", n, err)
		}
	}

	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": rel.Name, "Namespace": rel.Namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart":        chartMeta(c.Meta),
		"Files":        files(c.Files),
		"Capabilities": capabilities{KubeVersion: map[string]string{"Version": "v1.32.0", "Major": "1", "Minor": "32"}, APIVersions: apiVersions{"v1", "apps/v1", "app.k8s.io/v1beta1"}},
	}
	var out strings.Builder
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") || !(strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml") || strings.HasSuffix(base, ".tpl")) {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, n, data); err != nil {
			return "", fmt.Errorf("render %s: %v", n, err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s", n, strings.TrimLeft(text, "\n"))
		if !strings.HasSuffix(text, "\n") {
			out.WriteString("\n")
		}
	}
	return out.String(), nil
}

// chartMeta exposes Chart.yaml fields with Helm's capitalised names (.Chart.Name, .Chart.AppVersion).
func chartMeta(m map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range m {
		if k == "appVersion" {
			out["AppVersion"] = v
			continue
		}
		out[strings.ToUpper(k[:1])+k[1:]] = v
	}
	return out
}
