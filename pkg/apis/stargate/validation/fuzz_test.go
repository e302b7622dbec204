package validation_test

import (
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/install"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/apis/stargate/validation"
)

// The fuzz targets decode arbitrary bytes (JSON or YAML) as each kind the
// API accepts, the way the server does (strictly, then defaulted and
// converted to the internal version), and validate what decodes. Seeds are
// in testdata/fuzz/<target>; `make fuzz` runs each for a bounded time.
// Properties: nothing panics; validation never reports an internal error
// (that would be a 500); a valid object stays valid through an encode and
// decode round trip, and updating it to itself is allowed.

var (
	scheme = func() *runtime.Scheme {
		s := runtime.NewScheme()
		install.Install(s)
		return s
	}()
	codecs = serializer.NewCodecFactory(scheme, serializer.EnableStrict)
)

// decode turns data into the internal object of the kind of into, or false.
func decode(t *testing.T, data []byte, versioned, internal runtime.Object) bool {
	t.Helper()
	obj, gvk, err := codecs.UniversalDeserializer().Decode(data, nil, versioned)
	if err != nil || gvk.GroupVersion() != v1alpha1.SchemeGroupVersion || obj != versioned {
		return false
	}
	scheme.Default(versioned)
	if err := scheme.Convert(versioned, internal, nil); err != nil {
		return false
	}
	return true
}

// roundTrip encodes an internal object as v1alpha1 JSON and decodes it again.
func roundTrip(t *testing.T, internal, versioned, again runtime.Object) {
	t.Helper()
	codec := codecs.LegacyCodec(v1alpha1.SchemeGroupVersion)
	data, err := runtime.Encode(codec, internal)
	if err != nil {
		t.Fatalf("a valid object does not encode: %v", err)
	}
	if !decode(t, data, versioned, again) {
		t.Fatalf("a valid object does not decode after encoding: %s", data)
	}
	if !apiequality.Semantic.DeepEqual(internal, again) {
		t.Fatalf("round trip changed the object:\n%#v\n%#v", internal, again)
	}
}

// stored is a copy of obj as the server holds it: with a resourceVersion,
// which every update must carry.
func stored[T interface {
	runtime.Object
	SetResourceVersion(string)
}](obj T) T {
	c := obj.DeepCopyObject().(T)
	c.SetResourceVersion("1")
	return c
}

func noInternalErrors(t *testing.T, errs field.ErrorList) {
	t.Helper()
	for _, e := range errs {
		if e.Type == field.ErrorTypeInternal {
			t.Fatalf("validation reported an internal error (a 500): %v", e)
		}
	}
}

func FuzzHardware(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		hw := &stargate.Hardware{}
		if !decode(t, data, &v1alpha1.Hardware{}, hw) {
			return
		}
		errs := validation.ValidateHardware(hw)
		noInternalErrors(t, errs)
		if len(errs) > 0 {
			return
		}
		noInternalErrors(t, validation.ValidateHardwareStatusUpdate(stored(hw), stored(hw)))
		if errs := validation.ValidateHardwareUpdate(stored(hw), stored(hw)); len(errs) > 0 {
			t.Fatalf("updating a valid Hardware to itself: %v", errs)
		}
		roundTrip(t, hw, &v1alpha1.Hardware{}, &stargate.Hardware{})
	})
}

func FuzzTemplate(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		tmpl := &stargate.Template{}
		if !decode(t, data, &v1alpha1.Template{}, tmpl) {
			return
		}
		errs := validation.ValidateTemplate(tmpl)
		noInternalErrors(t, errs)
		if len(errs) > 0 {
			return
		}
		if errs := validation.ValidateTemplateUpdate(stored(tmpl), stored(tmpl)); len(errs) > 0 {
			t.Fatalf("updating a valid Template to itself: %v", errs)
		}
		roundTrip(t, tmpl, &v1alpha1.Template{}, &stargate.Template{})
	})
}

func FuzzJob(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		job := &stargate.Job{}
		if !decode(t, data, &v1alpha1.Job{}, job) {
			return
		}
		errs := validation.ValidateJob(job)
		noInternalErrors(t, errs)
		if len(errs) > 0 {
			return
		}
		noInternalErrors(t, validation.ValidateJobStatusUpdate(stored(job), stored(job)))
		if errs := validation.ValidateJobUpdate(stored(job), stored(job)); len(errs) > 0 {
			t.Fatalf("updating a valid Job to itself: %v", errs)
		}
		roundTrip(t, job, &v1alpha1.Job{}, &stargate.Job{})
	})
}

func FuzzDatacenter(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		dc := &stargate.Datacenter{}
		if !decode(t, data, &v1alpha1.Datacenter{}, dc) {
			return
		}
		errs := validation.ValidateDatacenter(dc)
		noInternalErrors(t, errs)
		if len(errs) > 0 {
			return
		}
		noInternalErrors(t, validation.ValidateDatacenterStatusUpdate(stored(dc), stored(dc)))
		if errs := validation.ValidateDatacenterUpdate(stored(dc), stored(dc)); len(errs) > 0 {
			t.Fatalf("updating a valid Datacenter to itself: %v", errs)
		}
		roundTrip(t, dc, &v1alpha1.Datacenter{}, &stargate.Datacenter{})
	})
}

func FuzzRepaveRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &stargate.RepaveRequest{}
		if !decode(t, data, &v1alpha1.RepaveRequest{}, req) {
			return
		}
		errs := validation.ValidateRepaveRequest(req, "server-001")
		noInternalErrors(t, errs)
		if len(errs) == 0 {
			roundTrip(t, req, &v1alpha1.RepaveRequest{}, &stargate.RepaveRequest{})
		}
	})
}
