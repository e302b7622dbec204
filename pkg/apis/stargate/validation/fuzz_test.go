package validation_test

import (
	"os"
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

// storedKind is one kind the server keeps, as the fuzz targets need it.
type storedKind[T interface {
	runtime.Object
	SetResourceVersion(string)
}] struct {
	versioned    func() runtime.Object
	internal     func() T
	validate     func(T) field.ErrorList
	update       func(T, T) field.ErrorList
	statusUpdate func(T, T) field.ErrorList // nil: the kind has no status
}

func (k storedKind[T]) fuzz(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		obj := k.internal()
		if !decode(t, data, k.versioned(), obj) {
			return
		}
		errs := k.validate(obj)
		noInternalErrors(t, errs)
		if len(errs) > 0 {
			return
		}
		if k.statusUpdate != nil {
			noInternalErrors(t, k.statusUpdate(stored(obj), stored(obj)))
		}
		if errs := k.update(stored(obj), stored(obj)); len(errs) > 0 {
			t.Fatalf("updating a valid object to itself: %v", errs)
		}
		roundTrip(t, obj, k.versioned(), k.internal())
	})
}

func FuzzHardware(f *testing.F) {
	storedKind[*stargate.Hardware]{
		versioned: func() runtime.Object { return &v1alpha1.Hardware{} }, internal: func() *stargate.Hardware { return &stargate.Hardware{} },
		validate: validation.ValidateHardware, update: validation.ValidateHardwareUpdate, statusUpdate: validation.ValidateHardwareStatusUpdate,
	}.fuzz(f)
}

func FuzzTemplate(f *testing.F) {
	storedKind[*stargate.Template]{
		versioned: func() runtime.Object { return &v1alpha1.Template{} }, internal: func() *stargate.Template { return &stargate.Template{} },
		validate: validation.ValidateTemplate, update: validation.ValidateTemplateUpdate,
	}.fuzz(f)
}

func FuzzJob(f *testing.F) {
	storedKind[*stargate.Job]{
		versioned: func() runtime.Object { return &v1alpha1.Job{} }, internal: func() *stargate.Job { return &stargate.Job{} },
		validate: validation.ValidateJob, update: validation.ValidateJobUpdate, statusUpdate: validation.ValidateJobStatusUpdate,
	}.fuzz(f)
}

func FuzzDatacenter(f *testing.F) {
	storedKind[*stargate.Datacenter]{
		versioned: func() runtime.Object { return &v1alpha1.Datacenter{} }, internal: func() *stargate.Datacenter { return &stargate.Datacenter{} },
		validate: validation.ValidateDatacenter, update: validation.ValidateDatacenterUpdate, statusUpdate: validation.ValidateDatacenterStatusUpdate,
	}.fuzz(f)
}

func FuzzCampaign(f *testing.F) {
	storedKind[*stargate.Campaign]{
		versioned: func() runtime.Object { return &v1alpha1.Campaign{} }, internal: func() *stargate.Campaign { return &stargate.Campaign{} },
		validate: validation.ValidateCampaign, update: validation.ValidateCampaignUpdate, statusUpdate: validation.ValidateCampaignStatusUpdate,
	}.fuzz(f)
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

// TestCampaignSample keeps the documented sample valid, so the FuzzCampaign
// seed made from it reaches the round trip.
func TestCampaignSample(t *testing.T) {
	data, err := os.ReadFile("../../../../artifacts/samples/campaign.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := &stargate.Campaign{}
	if !decode(t, data, &v1alpha1.Campaign{}, c) {
		t.Fatal("artifacts/samples/campaign.yaml does not decode as a Campaign")
	}
	if errs := validation.ValidateCampaign(c); len(errs) > 0 {
		t.Fatalf("artifacts/samples/campaign.yaml is invalid: %v", errs)
	}
	if len(c.Spec.Waves) != 3 || c.Spec.MaintenanceWindows[0].TimeZone != "Europe/Paris" {
		t.Errorf("decoded %+v", c.Spec)
	}
}
