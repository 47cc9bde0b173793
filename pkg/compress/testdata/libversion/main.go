// Command libversion prints compress.Library() as a real binary sees it.
package main

import (
	"fmt"

	"github.com/nixoci/nixoci/pkg/compress"
)

func main() { fmt.Println(compress.Library()) }
