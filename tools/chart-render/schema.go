package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

type schema struct {
	Marketplace map[string]interface{}
	Properties  map[string]map[string]interface{}
	Required    []string
}

type schemaInput struct {
	Name        string
	Namespace   string
	ImagePrefix string
	Parameters  string // JSON object, may be empty
}

// loadSchema reads schema.yaml and merges test overlays' properties over it, as the deployer's test
// mode does (an overlay may add defaults but never change a property's Marketplace type).
func loadSchema(p string, overlays []string) (*schema, error) {
	raw, err := readYAMLMap(p)
	if err != nil {
		return nil, err
	}
	s := &schema{Properties: map[string]map[string]interface{}{}}
	s.Marketplace, _ = raw["x-google-marketplace"].(map[string]interface{})
	if s.Marketplace == nil {
		return nil, fmt.Errorf("%s: field \"x-google-marketplace\" is required", p)
	}
	if err := s.addProperties(raw, p, false); err != nil {
		return nil, err
	}
	if req, ok := raw["required"].([]interface{}); ok {
		for _, r := range req {
			s.Required = append(s.Required, fmt.Sprint(r))
		}
	}
	for _, o := range overlays {
		ov, err := readYAMLMap(o)
		if err != nil {
			return nil, err
		}
		if err := s.addProperties(ov, o, true); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func xtype(prop map[string]interface{}) string {
	x, _ := prop["x-google-marketplace"].(map[string]interface{})
	t, _ := x["type"].(string)
	return t
}

func (s *schema) addProperties(raw map[string]interface{}, source string, overlay bool) error {
	props, _ := raw["properties"].(map[string]interface{})
	for name, v := range props {
		prop, ok := v.(map[string]interface{})
		if !ok {
			return fmt.Errorf("%s: property %q must be a map", source, name)
		}
		if old, ok := s.Properties[name]; ok && overlay {
			if xtype(old) != xtype(prop) && xtype(prop) != "" {
				return fmt.Errorf("%s: property %q: an overlay cannot change x-google-marketplace.type", source, name)
			}
			s.Properties[name] = mergeMaps(old, prop)
			continue
		}
		s.Properties[name] = prop
	}
	return nil
}

var dns1123Invalid = regexp.MustCompile(`[^a-z0-9-]+`)

// dns1123 shortens and cleans a name the way mpdev names the objects it provisions.
func dns1123(s string) string {
	s = dns1123Invalid.ReplaceAllString(strings.ToLower(s), "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "-")
}

// values computes the chart values the deployer would pass to helm: property values from
// --parameters, else the schema default, else what mpdev provisions for that Marketplace type; then
// image properties derived from the image prefix and publishedVersion; dotted names become nested.
func (s *schema) values(in schemaInput) (map[string]interface{}, error) {
	params := map[string]interface{}{}
	if in.Parameters != "" {
		if err := json.Unmarshal([]byte(in.Parameters), &params); err != nil {
			return nil, fmt.Errorf("--parameters: not a JSON object: %v", err)
		}
	}
	imageProps := map[string]bool{}
	images, _ := s.Marketplace["images"].(map[string]interface{})
	for _, img := range images {
		m, _ := img.(map[string]interface{})
		props, _ := m["properties"].(map[string]interface{})
		for p := range props {
			imageProps[p] = true
		}
	}
	for k := range params {
		if _, ok := s.Properties[k]; !ok && k != "__image_repo_prefix__" {
			return nil, fmt.Errorf("--parameters: %q: no such property defined in schema", k)
		}
	}
	version, _ := s.Marketplace["publishedVersion"].(string)
	flat := map[string]interface{}{}
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		prop := s.Properties[n]
		if v, ok := params[n]; ok {
			flat[n] = v
			continue
		}
		if v, ok := prop["default"]; ok {
			flat[n] = v
			continue
		}
		switch xtype(prop) {
		case "NAME":
			flat[n] = in.Name
		case "NAMESPACE":
			flat[n] = in.Namespace
		case "SERVICE_ACCOUNT":
			flat[n] = dns1123(in.Name + "-" + n)
		case "REPORTING_SECRET":
			flat[n] = dns1123(in.Name + "-" + n)
		case "STORAGE_CLASS":
			flat[n] = dns1123(in.Namespace + "-" + in.Name + "-" + n)
		case "DEPLOYER_IMAGE":
			flat[n] = in.ImagePrefix + "/deployer:" + version
		case "ISTIO_ENABLED":
			flat[n] = false
		case "INGRESS_AVAILABLE":
			flat[n] = true
		}
	}
	prefix := in.ImagePrefix
	if p, ok := params["__image_repo_prefix__"].(string); ok && p != "" {
		prefix = p
	}
	for imgName, img := range images {
		repo := prefix
		if imgName != "" {
			repo = prefix + "/" + imgName
		}
		m, _ := img.(map[string]interface{})
		props, _ := m["properties"].(map[string]interface{})
		for pname, pv := range props {
			pm, _ := pv.(map[string]interface{})
			t, _ := pm["type"].(string)
			registry, rest := repo, ""
			if i := strings.Index(repo, "/"); i >= 0 {
				registry, rest = repo[:i], repo[i+1:]
			}
			switch t {
			case "FULL":
				flat[pname] = repo + ":" + version
			case "REPO_WITH_REGISTRY":
				flat[pname] = repo
			case "REPO_WITHOUT_REGISTRY":
				flat[pname] = rest
			case "REGISTRY":
				flat[pname] = registry
			case "TAG":
				flat[pname] = version
			default:
				return nil, fmt.Errorf("schema: image %q property %q: unknown type %q", imgName, pname, t)
			}
		}
	}
	for _, r := range s.Required {
		if _, ok := flat[r]; !ok {
			return nil, fmt.Errorf("schema: required property %q has no value (give it in --parameters or a default)", r)
		}
	}
	out := map[string]interface{}{}
	for k, v := range flat {
		if err := setDotted(out, k, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func setDotted(m map[string]interface{}, key string, v interface{}) error {
	parts := strings.Split(key, ".")
	cur := m
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(map[string]interface{})
		if !ok {
			if _, exists := cur[p]; exists {
				return fmt.Errorf("schema: property %q collides with a scalar property %q", key, p)
			}
			next = map[string]interface{}{}
			cur[p] = next
		}
		cur = next
	}
	cur[parts[len(parts)-1]] = v
	return nil
}
