# nbgrader configuration of the kit's course: one assignment per notebook,
# named after it (00_background, 01_hard_pruning, ...). scripts/build_student.py
# copies this file into the course it lays out.
c = get_config()  # noqa: F821 (nbgrader provides get_config)

c.CourseDirectory.course_id = "shrinking-nets"
# What replaces a solution in the student edition: it fails with a plain
# message when the student runs the exercise's test before writing the code.
c.ClearSolutions.code_stub = {
    "python": '# YOUR CODE HERE\nraise NotImplementedError("not done yet: write this function, '
              'run this cell, then run the test cell below")'
}
# Autograding runs every notebook top to bottom; its training cells take longer
# than nbgrader's default of 30 s on a laptop CPU.
c.ExecutePreprocessor.timeout = 900
