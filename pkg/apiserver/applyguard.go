package apiserver

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/request"
	"sigs.k8s.io/yaml"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// applyGuard answers 400 to a server-side apply whose object does not fit the
// schema (a field that does not exist, a string where a number goes).
// k8s.io/apiserver finds such patches only in the field manager, which
// reports them as a plain error, hence a 500 (kubernetes/kubernetes#139253):
// bad input must never look like a server fault. The guard runs the same
// typed conversion first, with the same OpenAPI schema, and sends everything
// else on untouched.
type applyGuard struct {
	converter atomic.Pointer[managedfields.TypeConverter]
	maxBody   int64
}

// setSchema arms the guard with the installed group's OpenAPI models.
func (g *applyGuard) setSchema(tc managedfields.TypeConverter) { g.converter.Store(&tc) }

func (g *applyGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, ok := request.RequestInfoFrom(r.Context())
		tc := g.converter.Load()
		if !ok || tc == nil || !info.IsResourceRequest || info.Verb != "patch" || info.APIGroup != stargate.GroupName ||
			r.Header.Get("Content-Type") != string(types.ApplyYAMLPatchType) {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, g.maxBody+1))
		r.Body.Close()
		if err != nil {
			responsewriters.ErrorNegotiated(apierrors.NewBadRequest("reading the request body: "+err.Error()),
				Codecs, v1alpha1.SchemeGroupVersion, w, r)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if int64(len(body)) > g.maxBody {
			next.ServeHTTP(w, r) // the handler answers 413
			return
		}
		if err := checkApplyPatch(*tc, body); err != nil {
			gv := schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}
			responsewriters.ErrorNegotiated(apierrors.NewBadRequest(err.Error()), Codecs, gv, w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkApplyPatch is the field manager's conversion of an applied object to
// its schema type. Bodies that are not a stargate.io/v1alpha1 object of a
// known kind are left to the handler, which has clear errors for them.
func checkApplyPatch(tc managedfields.TypeConverter, body []byte) error {
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(body, &obj.Object); err != nil || obj.Object == nil {
		return nil
	}
	gvk := obj.GroupVersionKind()
	if gvk.GroupVersion() != v1alpha1.SchemeGroupVersion || !Scheme.Recognizes(gvk) {
		return nil
	}
	if _, err := tc.ObjectToTyped(obj); err != nil {
		return fmt.Errorf("the applied %s does not fit its schema: %v", gvk.Kind, err)
	}
	return nil
}
