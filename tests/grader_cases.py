"""Labelled answer pairs shared by the grader tests: EQUIVALENCE_TABLE (equal and unequal pairs, with the
expected verdict) and NOT_EQUAL.

Every pair in NOT_EQUAL is mathematically unequal: numbers sharing digits, answers followed by prose,
products, fractions and other look-alikes. megatron_octo.eval.grader's default path (already extracted, and
extracted from a response) and megatron_octo.rl.reward must judge each of them wrong.
"""

# (prediction, gold, expected)
EQUIVALENCE_TABLE = [
    # integers, decimals, floats from AMC golds
    ("27", "27.0", True),
    ("27.0", "27", True),
    ("27.5", "27", False),
    ("-3", "-3.00", True),
    ("3", "-3", False),
    ("1,000", "1000", True),
    ("1000", "10000", False),
    ("0.5", "\\frac{1}{2}", True),
    (".5", "1/2", True),
    ("0.33", "\\frac{1}{3}", False),
    ("0.3333333", "\\frac13", True),
    # fractions and LaTeX variants
    ("\\dfrac{3}{4}", "\\frac{3}{4}", True),
    ("\\tfrac34", "\\frac{3}{4}", True),
    ("3/4", "\\frac{3}{4}", True),
    ("\\frac{6}{8}", "\\frac{3}{4}", True),
    ("\\frac{4}{3}", "\\frac{3}{4}", False),
    ("-\\frac{2}{3}", "\\frac{-2}{3}", True),
    ("\\frac{2}{3}", "-\\frac{2}{3}", False),
    ("\\left(3, \\frac{\\pi}{2}\\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("(3,\\frac{\\pi}{2})", "(3, \\pi/2)", True),
    ("(3, \\pi)", "(3, \\frac{\\pi}{2})", False),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\sqrt2", "\\sqrt{2}", True),
    ("\\sqrt{3}", "\\sqrt{2}", False),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("x^2+1", "(x+1)^2", False),
    ("6\\pi", "6 \\pi", True),
    ("2\\pi", "\\pi", False),
    ("\\boxed{5}", "5", True),
    # percentages
    ("50\\%", "50", True),
    ("50\\%", "0.5", True),
    ("50%", "50\\%", True),
    ("5\\%", "50", False),
    ("4.2", "4.2\\%", True),
    # units and decorations
    ("10 \\text{ cm}", "10", True),
    ("10\\text{ cm}^2", "10", True),
    ("18 dollars", "18", True),
    ("\\$18", "18", True),
    ("30^\\circ", "30", True),
    ("30^{\\circ}", "45", False),
    ("x = 5", "5", True),
    ("y=7", "5", False),
    ("\\text{(C)}", "C", True),
    ("(B)", "C", False),
    ("\\text{Monday}", "monday", True),
    # intervals
    ("[2,5)", "[2,5)", True),
    ("[2, 5)", "\\left[2,5\\right)", True),
    ("[2,5]", "[2,5)", False),
    ("(-\\infty, 0) \\cup \\{1\\}", "(-\\infty,0)\\cup\\{1\\}", True),
    ("(-\\infty,-5)", "(-\\infty, -4)", False),
    ("[\\frac{1}{2}, 8]", "[0.5, 8]", True),
    # sets and lists (order-insensitive)
    ("\\{1,2,3\\}", "\\{3,2,1\\}", True),
    ("\\{1,2\\}", "\\{1,2,3\\}", False),
    ("3, 1", "1,3", True),
    ("1, 3, 5", "1,3,5", True),
    ("1, 3", "1,3,5", False),
    ("$84$,$69$", "$69$,$84$", True),
    ("(2,7,13), (1,8,19), (4,5,7)", "$(1,8,19), (2,7,13), (4,5,7)$", True),
    ("(1,8,19), (2,7,13)", "$(1,8,19), (2,7,13), (4,5,7)$", False),
    ("-2, 0, 2", "$-2,0,2$", True),
    ("x=1 \\text{ and } x=2", "1, 2", True),
    # tuples keep their order
    ("(1,2)", "(1,2)", True),
    ("(2,1)", "(1,2)", False),
    # expressions, equations
    ("f(x)=x+1", "x+1", True),
    ("2x+2", "2(x+1)", True),
    ("2x+3", "2(x+1)", False),
    ("10^{4}", "10000", True),
    ("1.6 \\times 10^{-8}", "1.6e-8", True),
    ("1.6 \\times 10^{-8}", "1.7 \\times 10^{-8}", False),
    ("2^{10}", "1024", True),
    # non-answers
    ("", "5", False),
    ("   ", "5", False),
]


NOT_EQUAL = [
    # numbers sharing digits
    ("144", "4"), ("144", "14"), ("14", "4"), ("41", "14"), ("12", "1"), ("123", "2"), ("36", "3"),
    ("10", "1"), ("100", "10"), ("2", "20"), ("0.5", "5"), ("1.5", "15"), ("3.14", "314"), ("1,000", "1"),
    ("1,234", "234"), ("-4", "4"), ("4.5", "45"),
    # answers followed by prose
    ("144. I hope it is correct.", "4"), ("144.Ihopeitiscorrect", "4"), ("$144$. I hope it is correct.", "4"),
    ("36. I hope it is correct.", "3"), ("123.Ihopeitiscorrect", "2"), ("12. That is all.", "1"),
    ("10, because 2 times 5 is 10", "1"), ("17 apples. I hope it is correct.", "7"), ("5, since 2+3=5", "2"),
    ("2\\sqrt{2}, approximately 2.83", "2"),
    # products
    ("2\\cdot 3", "23"), ("23", "2\\cdot 3"), ("2 \\times 3", "23"), ("1 \\cdot 4", "14"), ("2\\cdot 3", "5"),
    ("3 \\cdot 10^6", "310^6"), ("2 \\times 2", "22"),
    # fractions
    ("\\frac{1}{2}", "\\frac{2}{1}"), ("1/2", "12"), ("\\frac{3}{4}", "34"), ("\\frac12", "12"), ("3/4", "4"),
    ("\\frac{1}{3}", "0.33"), ("\\frac{1}{2}", "\\frac{1}{4}"), ("-\\frac{1}{2}", "\\frac{1}{2}"),
    ("\\frac{144}{4}", "144"),
    # other look-alikes
    ("1,2", "12"), ("(1,2)", "(2,1)"), ("[2,5]", "[2,5)"), ("\\sqrt{2}", "2"), ("2\\sqrt{2}", "\\sqrt{2}"),
    ("x+1", "x-1"), ("10^6", "106"), ("2^{10}", "210"), ("\\pi", "3"),
]
