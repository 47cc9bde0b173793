// Package guest is the init of the runAsRoot VM: it builds the image's root,
// runs the script as root in it and writes the changes back as a layer tar.
package guest
