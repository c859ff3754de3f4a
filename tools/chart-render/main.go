// chart-render renders a Helm chart the way `helm template` does, for machines without a helm
// binary: Go's text/template with the sprig functions and the Helm built-ins the Kip chart uses.
// With --schema it first turns a Marketplace schema v2 (plus parameters) into chart values the way
// the Marketplace deployer does, so `make app/render` shows what an install would apply.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var valueFiles, overlaySchemas, overlayCharts stringList
	chartDir := flag.String("chart", "chart/kip", "chart directory (holds Chart.yaml, values.yaml, templates/)")
	flag.Var(&overlayCharts, "overlay-chart", "test chart overlay: its values.yaml is merged, its templates added (repeatable)")
	schemaPath := flag.String("schema", "", "Marketplace schema.yaml: derive values from its defaults as the deployer does")
	flag.Var(&overlaySchemas, "overlay-schema", "test schema overlay merged over --schema properties (repeatable)")
	params := flag.String("parameters", "", "JSON object of schema property values (like mpdev --parameters)")
	prefix := flag.String("image-prefix", "gcr.io/example-project/kip", "image repository prefix (the deployer image without /deployer)")
	name := flag.String("name", "kip", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	printValues := flag.Bool("print-values", false, "print the computed values as YAML instead of rendering")
	flag.Var(&valueFiles, "values", "values YAML file merged over the chart's values (repeatable; later wins)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: chart-render [--schema schema.yaml] [--values file]... [--chart dir] [--name n] [--namespace ns]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected argument %q", flag.Arg(0)))
	}

	chart, err := loadChart(*chartDir, overlayCharts)
	if err != nil {
		fail(err)
	}
	values := chart.Values
	if *schemaPath != "" {
		sch, err := loadSchema(*schemaPath, overlaySchemas)
		if err != nil {
			fail(err)
		}
		fromSchema, err := sch.values(schemaInput{Name: *name, Namespace: *namespace, ImagePrefix: *prefix, Parameters: *params})
		if err != nil {
			fail(err)
		}
		values = mergeMaps(values, fromSchema)
	}
	for _, f := range valueFiles {
		v, err := readYAMLMap(f)
		if err != nil {
			fail(err)
		}
		values = mergeMaps(values, v)
	}
	if *printValues {
		out, err := toYAML(values)
		if err != nil {
			fail(err)
		}
		fmt.Println(out)
		return
	}
	out, err := render(chart, values, release{Name: *name, Namespace: *namespace})
	if err != nil {
		fail(err)
	}
	fmt.Print(out)
}

// fail prints one line, the way every Kip command reports bad input, and exits non-zero.
func fail(err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(os.Stderr, "chart-render: %s\n", msg)
	os.Exit(1)
}
