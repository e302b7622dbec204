package datacenter_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/datacenter"
)

type openAPI struct {
	Paths      map[string]map[string]interface{} `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]interface{} `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

func loadContract(t *testing.T) openAPI {
	t.Helper()
	data, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestTypesMatchTheContract keeps the Go wire types and openapi.yaml in step:
// every JSON field of a type is a property of its schema and back.
func TestTypesMatchTheContract(t *testing.T) {
	doc := loadContract(t)
	for schema, typ := range map[string]interface{}{
		"JobRequest": datacenter.JobRequest{}, "Machine": datacenter.Machine{}, "Image": datacenter.Image{},
		"Job": datacenter.Job{}, "MachineState": datacenter.MachineState{}, "ErrorBody": datacenter.ErrorBody{},
	} {
		var fields []string
		rt := reflect.TypeOf(typ)
		for i := range rt.NumField() {
			fields = append(fields, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
		}
		var props []string
		for p := range doc.Components.Schemas[schema].Properties {
			props = append(props, p)
		}
		sort.Strings(fields)
		sort.Strings(props)
		if !slices.Equal(fields, props) {
			t.Errorf("%s: Go fields %v, contract properties %v", schema, fields, props)
		}
	}
}

// TestMockServesEveryPath: every operation in the contract is routed by the
// mock (it may answer 4xx for the dummy request, but never "no route").
func TestMockServesEveryPath(t *testing.T) {
	doc := loadContract(t)
	dc, err := mockdc.New(mockdc.DefaultOptions("dc-contract"))
	if err != nil {
		t.Fatal(err)
	}
	h := dc.Handler()
	for path, methods := range doc.Paths {
		for method := range methods {
			url := strings.NewReplacer("{id}", "dc-contract-job-1", "{mac}", "aa:bb:cc:dd:ee:01").Replace(path)
			req := httptest.NewRequest(strings.ToUpper(method), url, strings.NewReader("{}"))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if strings.Contains(rec.Body.String(), "no route") || rec.Code == http.StatusMethodNotAllowed {
				t.Errorf("%s %s: the mock does not serve it (%d %s)", method, path, rec.Code, rec.Body.String())
			}
		}
	}
}
