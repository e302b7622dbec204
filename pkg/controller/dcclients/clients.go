// Package dcclients gives the controllers one datacenter API client per
// Datacenter, authenticated with its credentials file.
package dcclients

import (
	"path/filepath"
	"sync"
	"time"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller/metrics"
	"stargate.io/stargate/pkg/datacenter"
)

// ClientFor returns the datacenter client of a Datacenter.
type ClientFor func(dc *v1alpha1.Datacenter) (datacenter.Client, error)

// HTTPClients returns a ClientFor that keeps one HTTP client per Datacenter
// name and endpoint (a new endpoint replaces the client). With a
// credentialsDir, each client authenticates with CredentialsFile(credentialsDir,
// name) whether or not that file exists yet: the file is read at each call
// (again only when it changed), so adding or rotating it takes effect without
// a restart, and while it is missing calls fail with a
// *datacenter.CredentialsError naming it. Every attempt is timed in
// stargate_datacenter_request_duration_seconds.
func HTTPClients(credentialsDir string) ClientFor {
	type entry struct {
		endpoint string
		client   datacenter.Client
	}
	var mu sync.Mutex
	clients := map[string]entry{}
	return func(dc *v1alpha1.Datacenter) (datacenter.Client, error) {
		mu.Lock()
		defer mu.Unlock()
		if e, ok := clients[dc.Name]; ok && e.endpoint == dc.Spec.Endpoint {
			return e.client, nil
		}
		name := dc.Name
		c, err := datacenter.New(datacenter.Config{
			Endpoint:  dc.Spec.Endpoint,
			TokenFile: CredentialsFile(credentialsDir, dc.Name),
			Observer: func(_ string, code int, elapsed time.Duration) {
				metrics.ObserveDatacenterRequest(name, code, elapsed)
			},
		})
		if err != nil {
			return nil, err
		}
		clients[dc.Name] = entry{endpoint: dc.Spec.Endpoint, client: c}
		return c, nil
	}
}

// CredentialsFile is the file holding the bearer token of Datacenter
// datacenterName: <credentialsDir>/<datacenterName>, or "" without a directory.
func CredentialsFile(credentialsDir, datacenterName string) string {
	if credentialsDir == "" {
		return ""
	}
	return filepath.Join(credentialsDir, datacenterName)
}
