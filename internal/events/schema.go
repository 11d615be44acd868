package events

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schemas holds the contract of every event type: schema/<type>.json, a
// JSON Schema (2020-12), described in docs/events.md.
//
//go:embed schema/*.json
var Schemas embed.FS

// schemaBase is where the schemas' $ids place them.
const schemaBase = "https://claim-process.example/events/"

var compiled = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, typ := range []string{TypeStored, TypeReversed} {
		b, err := Schemas.ReadFile("schema/" + typ + ".json")
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s.json: %w", typ, err)
		}
		if err := c.AddResource(schemaBase+typ+".json", doc); err != nil {
			return nil, err
		}
	}
	out := map[string]*jsonschema.Schema{}
	for _, typ := range []string{TypeStored, TypeReversed} {
		s, err := c.Compile(schemaBase + typ + ".json")
		if err != nil {
			return nil, err
		}
		out[typ] = s
	}
	return out, nil
})

// Validate checks an event's body against the schema of its type.
func Validate(body []byte) error {
	schemas, err := compiled()
	if err != nil {
		return err
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return fmt.Errorf("event is not JSON: %w", err)
	}
	s, ok := schemas[head.Type]
	if !ok {
		return fmt.Errorf("unknown event type %q", head.Type)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	return s.Validate(doc)
}
